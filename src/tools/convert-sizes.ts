import * as C from '../stream/constants.js';
import type { SendCommand } from '../stream/types.js';

/**
 * File sizes (i_size) as a stream walks, for the converter's two size-dependent decisions: whether an
 * unaligned extent tail may be sent encoded (the kernel allows that only when the write reaches EOF) and
 * how far a punched hole reaches. A size is known only for files this stream created or truncated;
 * anything uncertain is forgotten rather than guessed, so callers fall back to the safe choice.
 */
export class SizeTracker {
  private sizes = new Map<string, bigint>();
  private dirs = new Set<string>();

  private static key(p: Uint8Array): string {
    return Buffer.from(p.buffer, p.byteOffset, p.length).toString('latin1');
  }

  get(path: Uint8Array): bigint | undefined {
    return this.sizes.get(SizeTracker.key(path));
  }

  private grow(path: Uint8Array, end: bigint): void {
    const k = SizeTracker.key(path);
    const s = this.sizes.get(k);
    if (s !== undefined && end > s) this.sizes.set(k, end);
  }

  /** Feeds one command of the input (before any conversion). */
  apply(c: SendCommand): void {
    switch (c.cmd) {
      case C.BTRFS_SEND_C_SUBVOL:
      case C.BTRFS_SEND_C_SNAPSHOT:
        this.sizes.clear();
        this.dirs.clear();
        return;
      case C.BTRFS_SEND_C_MKFILE:
        this.sizes.set(SizeTracker.key((c as { path: Uint8Array }).path), 0n);
        return;
      case C.BTRFS_SEND_C_MKDIR:
        this.dirs.add(SizeTracker.key((c as { path: Uint8Array }).path));
        return;
      case C.BTRFS_SEND_C_RENAME: {
        const r = c as { path: Uint8Array; pathTo: Uint8Array };
        const from = SizeTracker.key(r.path);
        const to = SizeTracker.key(r.pathTo);
        const s = this.sizes.get(from);
        if (s === undefined) {
          // a directory (or something we know nothing about): every path below it changes name, so
          // forget all sizes instead of scanning for the ones that moved
          this.sizes.clear();
          this.dirs.clear();
          return;
        }
        this.sizes.delete(from);
        this.sizes.set(to, s);
        return;
      }
      case C.BTRFS_SEND_C_LINK: {
        const l = c as { path: Uint8Array; pathLink: Uint8Array };
        // two names, one inode: tracking both would let them disagree, so track neither
        this.sizes.delete(SizeTracker.key(l.pathLink));
        this.sizes.delete(SizeTracker.key(l.path));
        return;
      }
      case C.BTRFS_SEND_C_UNLINK:
      case C.BTRFS_SEND_C_RMDIR:
        this.sizes.delete(SizeTracker.key((c as { path: Uint8Array }).path));
        return;
      case C.BTRFS_SEND_C_WRITE: {
        const w = c as { path: Uint8Array; fileOffset: bigint; data: Uint8Array };
        this.grow(w.path, w.fileOffset + BigInt(w.data.length));
        return;
      }
      case C.BTRFS_SEND_C_ENCODED_WRITE: {
        const w = c as { path: Uint8Array; fileOffset: bigint; unencodedFileLen: bigint };
        this.grow(w.path, w.fileOffset + w.unencodedFileLen);
        return;
      }
      case C.BTRFS_SEND_C_CLONE: {
        const w = c as { path: Uint8Array; fileOffset: bigint; cloneLen: bigint };
        this.grow(w.path, w.fileOffset + w.cloneLen);
        return;
      }
      case C.BTRFS_SEND_C_TRUNCATE: {
        const t = c as { path: Uint8Array; size: bigint };
        // truncate makes the size known even for a file that came from the parent
        this.sizes.set(SizeTracker.key(t.path), t.size);
        return;
      }
      case C.BTRFS_SEND_C_FALLOCATE: {
        const f = c as { path: Uint8Array; mode: number; fileOffset: bigint; size: bigint };
        if (!(f.mode & (C.FALLOC_FL_KEEP_SIZE | C.FALLOC_FL_PUNCH_HOLE))) this.grow(f.path, f.fileOffset + f.size);
        return;
      }
      default:
        return;
    }
  }
}
