import type { CloneRoot } from './backrefs.js';
import { LruMap } from './lru.js';

/** One file extent item already sent, that a later extent sharing its disk extent may clone from. */
export interface SentExtent {
  ino: bigint;
  /** File offset of the item (its key offset). */
  fileOffset: bigint;
  /** Offset into the disk extent (the item's `offset` field) and how many bytes it covers. */
  dataOffset: bigint;
  numBytes: bigint;
}

export interface CloneSource {
  ino: bigint;
  /** File offset in the source to clone from. */
  offset: bigint;
  /** The subvolume it is in, when not the one being sent (found through the extent tree's back references). */
  root?: CloneRoot;
}

/** Disk extents remembered; each keeps at most this many referencing items (the kernel stops at 64 refs). */
const MAX_EXTENTS = 1 << 16;
const MAX_REFS = 64;

/**
 * The kernel finds clone sources by walking the extent tree's back references (find_extent_clone). A full
 * send only clones from inodes it has already sent (lower inode numbers, or earlier in the same file), so
 * remembering the extents as they are sent finds the same sources without the back-reference walk. The
 * memory is bounded: the least recently seen disk extents are forgotten, and their later sharers are sent
 * as data (a bigger stream, never a wrong one).
 */
export class CloneIndex {
  private readonly byDisk = new LruMap<bigint, SentExtent[]>(MAX_EXTENTS);

  add(diskBytenr: bigint, e: SentExtent): void {
    const list = this.byDisk.get(diskBytenr) ?? [];
    if (list.length < MAX_REFS) list.push(e);
    this.byDisk.set(diskBytenr, list);
  }

  /**
   * The clone source the kernel's iterate_backrefs settles on for an extent of inode `q.ino` at disk
   * offset `q.dataOffset`: references are met newest first (the backref walk lists a leaf's items from its
   * last slot), uncompressed ones only if they contain `dataOffset`, the inode's own only if already
   * written; the first covering `extentLen` bytes wins, else the one covering most. Its offset is where
   * `dataOffset` is in the source file (uncompressed) or where the source item starts (compressed).
   */
  find(diskBytenr: bigint, q: CloneQuery): CloneSource | undefined {
    const list = this.byDisk.get(diskBytenr);
    if (!list) return undefined;
    let choice: CloneSource | undefined;
    let best = -1n;
    for (let i = list.length - 1; i >= 0; i--) {
      const e = list[i]!;
      let offset = e.fileOffset;
      if (!q.compressed) {
        if (q.dataOffset < e.dataOffset || q.dataOffset >= e.dataOffset + e.numBytes) continue;
        offset += q.dataOffset - e.dataOffset;
      }
      if (e.ino === q.ino && offset + q.extentLen > q.nextWriteOffset) continue;
      if (e.numBytes > best) {
        choice = { ino: e.ino, offset };
        best = e.numBytes;
        if (e.numBytes >= q.extentLen) break;
      }
    }
    return choice;
  }
}

export interface CloneQuery {
  /** The inode being sent and how far the receiver has it. */
  ino: bigint;
  nextWriteOffset: bigint;
  /** Offset into the disk extent the item starts at. */
  dataOffset: bigint;
  /** The kernel's extent_len: the item's bytes, cut at the inode's size. */
  extentLen: bigint;
  compressed: boolean;
}
