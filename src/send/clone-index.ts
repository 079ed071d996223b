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
   * A sent item that holds all of [dataOffset, dataOffset + len) of the disk extent, as iterate_backrefs
   * would choose it: the one covering the most bytes; `sizeOf` gives the source inode's size at the
   * receiver now, and the source range must lie inside it (a clone past EOF fails).
   */
  find(diskBytenr: bigint, dataOffset: bigint, len: bigint, sizeOf: (ino: bigint) => bigint): CloneSource | undefined {
    const list = this.byDisk.get(diskBytenr);
    if (!list) return undefined;
    let best: SentExtent | undefined;
    for (const e of list) {
      if (e.dataOffset > dataOffset || dataOffset + len > e.dataOffset + e.numBytes) continue;
      const offset = e.fileOffset + (dataOffset - e.dataOffset);
      if (offset + len > sizeOf(e.ino)) continue;
      if (!best || e.numBytes > best.numBytes) best = e;
    }
    return best && { ino: best.ino, offset: best.fileOffset + (dataOffset - best.dataOffset) };
  }
}
