import type { BtrfsCompressType } from '../compress/index.js';
import { BTRFS_FILE_EXTENT_INLINE } from '../image/structs/constants.js';
import { addDataCsums } from '../image/write/extents.js';
import { dropFileExtents, type FileExtentRef, insertFileExtent, isNodatasum, writeInlineExtent } from '../image/write/file-data.js';
import { getInode, updateInode } from '../image/write/inode.js';
import { fileRangeOf } from '../io/file-range.js';
import { concatBytes } from '../util/bytes.js';
import { U64_MAX } from '../image/structs/constants.js';
import { alignUp, padTo } from './extent-writer.js';
import { extentsEndBy, extentsIn, inlineExtent, readRange } from './file-read.js';
import { GatherWriter } from './gather-writer.js';

export { alignUp, MAX_INLINE, type WriterOptions } from './extent-writer.js';

/**
 * The writer the receiver uses: GatherWriter's per-file write gathering (gather-writer.ts) plus the
 * operations that change a file's size or punch holes, which must agree with what is still gathered
 * (btrfs_cont_expand, btrfs_truncate, btrfs_punch_hole), and encoded extents stored as they came.
 */
export class FileWriter extends GatherWriter {
  /** Zeros [start, end) of the file without changing its size (punch hole). */
  zeroRange(root: bigint, ino: bigint, start: bigint, end: bigint): void {
    this.flushFile(root, ino);
    const fs = this.fs;
    // past EOF nothing needs zeroing: like btrfs_punch_hole, stop at EOF rounded up to the sector
    const limit = alignUp(getInode(fs, root, ino)!.size, this.ss);
    if (end > limit) end = limit;
    if (end <= start) return;
    const inStart = alignUp(start, this.ss);
    const inEnd = end - (end % this.ss);
    const zeros = (a: bigint, b: bigint) => this.writeNow(root, ino, a, new Uint8Array(Number(b - a)));
    if (inlineExtent(fs, root, ino)) {
      zeros(start, end);
      return;
    }
    // btrfs_punch_hole zeroes partial edge blocks only where they are not holes (find_first_non_hole)
    if (inStart >= end) {
      if (!this.isHole(root, ino, start, end)) zeros(start, end);
      return;
    }
    if (start < inStart && !this.isHole(root, ino, start, inStart)) zeros(start, inStart);
    if (inEnd > inStart) dropFileExtents(fs, root, ino, inStart, inEnd);
    const tailStart = inEnd > inStart ? inEnd : inStart;
    if (tailStart < end && !this.isHole(root, ino, tailStart, end)) zeros(tailStart, end);
  }

  /** No extent (or only explicit holes) covers [start, end). */
  private isHole(root: bigint, ino: bigint, start: bigint, end: bigint): boolean {
    return extentsIn(this.fs, root, ino, start, end).every((x) => x.fe.type !== BTRFS_FILE_EXTENT_INLINE && x.fe.disk_bytenr === 0n);
  }

  /**
   * The kernel's btrfs_cont_expand: before a file grows past an EOF that is not sector aligned, the rest of
   * the EOF block is zeroed on disk (a new one-sector extent), because a shrink left old bytes there.
   * Skipped when the growth starts inside that block: the write's own read-modify-write covers it.
   */
  zeroEofTail(root: bigint, ino: bigint, isize: bigint, growFrom: bigint): void {
    const fs = this.fs;
    if (isize % this.ss === 0n) return;
    const block = isize - (isize % this.ss);
    if (growFrom < block + this.ss || inlineExtent(fs, root, ino)) return;
    // the kernel (6.18) writes the zeroed block even where it was a hole: seen in the differential test
    const keep = readRange(fs, root, ino, block, Number(isize - block));
    dropFileExtents(fs, root, ino, block, block + this.ss);
    this.writeAligned(root, ino, block, padTo(keep, Number(this.ss)));
  }

  /**
   * Sets the file size; shrinking drops extents past it and zeroes the rest of the last sector. Writes
   * still gathered for this file are cut to the new size rather than written first: the kernel's sender
   * emits WRITE then TRUNCATE for a shrunk file, and the kernel's receiver, truncating dirty pages, ends
   * up with one extent and no orphaned tail sector — so do we.
   */
  truncate(root: bigint, ino: bigint, size: bigint): void {
    const p = this.pendingOf(root, ino);
    let pendingCoversTail = false;
    if (p) {
      if (size <= p.start) {
        this.discardFile(root, ino);
      } else {
        if (size < p.start + BigInt(p.len)) {
          const keep = Number(size - p.start);
          const whole = p.parts.length === 1 ? p.parts[0]! : concatBytes(p.parts);
          p.parts = [whole.subarray(0, keep)];
          this.cutSectorCrcs(p, keep);
          this.pendingBytes -= p.len - keep;
          p.len = keep;
        }
        pendingCoversTail = p.start <= size - (size % this.ss);
      }
    }
    const fs = this.fs;
    const isize = getInode(fs, root, ino)!.size;
    const q = this.pendingOf(root, ino);
    if (size < isize && q && pendingCoversTail) {
      // the gathered write will rewrite the last sector; only extents past it must go
      dropFileExtents(fs, root, ino, alignUp(size, this.ss), U64_MAX);
      // btrfs_truncate writes back the dirty pages from the new EOF's block on before cutting: that
      // block becomes an extent of its own, the rest of the gathered range stays gathered
      const eofBlock = size - (size % this.ss);
      if (size % this.ss !== 0n && q.start < eofBlock && q.start + BigInt(q.len) > eofBlock) {
        const whole = q.parts.length === 1 ? q.parts[0]! : concatBytes(q.parts);
        const cut = Number(eofBlock - q.start);
        this.cutSectorCrcs(q, cut);
        const tail = whole.slice(cut);
        q.parts = [whole.subarray(0, cut)];
        q.len = cut;
        this.pendingBytes -= tail.length;
        updateInode(fs, root, ino, { size });
        this.writeNow(root, ino, eofBlock, tail);
        return;
      }
    } else if (size < isize) {
      this.flushFile(root, ino);
      const inl = inlineExtent(fs, root, ino);
      if (inl) {
        const keep = readRange(fs, root, ino, 0n, Number(size < inl.len ? size : inl.len));
        dropFileExtents(fs, root, ino, 0n, U64_MAX);
        if (keep.length) this.writeInline(root, ino, keep);
      } else {
        // like the kernel (6.x), the block holding the new EOF is left as it is; its tail is zeroed only
        // if the file grows again (zeroEofTail)
        dropFileExtents(fs, root, ino, alignUp(size, this.ss), U64_MAX);
      }
    } else if (size > isize) {
      this.zeroEofTail(root, ino, isize, size);
    }
    updateInode(fs, root, ino, { size });
  }

  /**
   * Stores an encoded extent as it came: `data` is the on-disk compressed bytes, the file range
   * [offset, offset + fileLen) shows bytes [uoff, uoff + fileLen) of its decoded `ramBytes`.
   */
  passThrough(root: bigint, ino: bigint, offset: bigint, x: { data: Uint8Array; type: BtrfsCompressType; ramBytes: bigint; uoff: bigint; fileLen: bigint; inline: boolean; sectorCrcs?: Uint32Array | undefined }): void {
    this.flushFile(root, ino);
    const fs = this.fs;
    const inode = getInode(fs, root, ino)!;
    const end = offset + x.fileLen;
    if (offset > inode.size) this.zeroEofTail(root, ino, inode.size, offset);
    this.stats.bytes += Number(x.fileLen);
    if (x.inline) {
      dropFileExtents(fs, root, ino, 0n, U64_MAX);
      writeInlineExtent(fs, root, ino, x.data, x.type, Number(x.ramBytes));
      this.stats.inline++;
      if (end > inode.size) updateInode(fs, root, ino, { size: end });
    } else {
      const numBytes = alignUp(x.fileLen, this.ss);
      // the common case, a file written in order, appends after its last extent
      if (!extentsEndBy(fs, root, ino, offset)) {
        if (offset > 0n) this.uninline(root, ino);
        dropFileExtents(fs, root, ino, offset, offset + numBytes);
      }
      const diskLen = alignUp(BigInt(x.data.length), this.ss);
      const bytenr = fs.allocData(diskLen);
      let padded = x.data;
      if (x.data.length !== Number(diskLen)) {
        padded = this.scratch(Number(diskLen));
        padded.set(x.data);
        padded.fill(0, x.data.length);
      }
      // the bytes as they are in a mapped stream file (unchanged: the parser's view) can come from the file
      fs.writeData(bytenr, padded, padded === x.data ? fileRangeOf(padded) : undefined);
      // the stream's CRC check already ran over these bytes: its per-sector CRCs give the checksums
      // (none for a NODATASUM file: the kernel's encoded write into one stores the extent without them)
      if (!isNodatasum(fs, root, ino)) addDataCsums(fs, bytenr, padded, x.sectorCrcs, true);
      // a file growing by the extent (written in order, the common case) changes nbytes and size at once
      const ref: FileExtentRef = {
        disk_bytenr: bytenr, disk_num_bytes: diskLen, offset: x.uoff, num_bytes: numBytes,
        ram_bytes: alignUp(x.ramBytes, this.ss), compression: x.type, fresh: true,
      };
      if (end > inode.size) ref.size = end;
      insertFileExtent(fs, root, ino, offset, ref);
      this.stats.extents++;
      this.stats.compressed++;
    }
  }
}
