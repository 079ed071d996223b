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

/** A clone source and the bytes its file extent item covers (what the kernel ranks sources by). */
export type SizedClone = CloneSource & { numBytes: bigint };

/**
 * find_extent_clone's choice among clone roots: each root's best reference (the one covering most), the
 * roots in order of their ids; a later root replaces the choice only by covering more, and the first that
 * covers the whole extent (`extentLen`) ends the search. A source without a `root` is of the sent
 * subvolume (tree `sendRoot`); sources of one root are merged (the larger wins, the first on a tie).
 */
export function pickClone(sources: SizedClone[], sendRoot: bigint, extentLen: bigint): CloneSource | undefined {
  const byRoot = new Map<bigint, SizedClone>();
  for (const s of sources) {
    const id = s.root?.tree.id ?? sendRoot;
    const had = byRoot.get(id);
    if (!had || s.numBytes > had.numBytes) byRoot.set(id, s);
  }
  let cur: SizedClone | undefined;
  for (const id of [...byRoot.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const s = byRoot.get(id)!;
    if (!cur || s.numBytes > cur.numBytes) {
      cur = s;
      if (s.numBytes >= extentLen) break;
    }
  }
  return cur;
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
  find(diskBytenr: bigint, q: CloneQuery): SizedClone | undefined {
    const list = this.byDisk.get(diskBytenr);
    if (!list) return undefined;
    let choice: SizedClone | undefined;
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
        choice = { ino: e.ino, offset, numBytes: e.numBytes };
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
