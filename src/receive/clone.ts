import { ReceiveError } from '../errors.js';
import { BTRFS_FILE_EXTENT_INLINE, BTRFS_FILE_EXTENT_PREALLOC } from '../image/structs/constants.js';
import { dropFileExtents, insertFileExtent, isNodatasum } from '../image/write/file-data.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { getInode, updateInode } from '../image/write/inode.js';
import { extentsIn, inlineExtent, readRange } from './file-read.js';
import { alignUp, type FileWriter } from './file-write.js';

/** Copy through memory in pieces of this size when extents cannot be shared. */
const COPY_CHUNK = 1 << 20;

/**
 * CLONE: the destination range gets references to the source's extents (a reflink: no data is copied,
 * reference counts go up), as the kernel's clone ioctl does. Where sharing is impossible — unaligned
 * ranges, inline source data, one file with data checksums and the other without (the kernel's clone
 * refuses that: a file partly checksummed) — the bytes are copied instead, which reads the same.
 */
export function cloneRange(
  fs: Filesystem, writer: FileWriter,
  src: { root: bigint; ino: bigint; offset: bigint },
  dst: { root: bigint; ino: bigint; offset: bigint },
  len: bigint,
): void {
  writer.flushFile(src.root, src.ino);
  writer.flushFile(dst.root, dst.ino);
  const ss = BigInt(fs.sectorsize);
  const srcInode = getInode(fs, src.root, src.ino)!;
  if (src.offset + len > srcInode.size) {
    throw new ReceiveError('CLONE_OUT_OF_RANGE', `clone source range ${src.offset}+${len} is past the source's end (${srcInode.size})`);
  }
  if (len === 0n) return;
  const srcEnd = src.offset + len;
  const reachesEof = srcEnd === srcInode.size;
  const aligned = src.offset % ss === 0n && dst.offset % ss === 0n && (len % ss === 0n || reachesEof);
  const pieces = extentsIn(fs, src.root, src.ino, src.offset, alignUp(srcEnd, ss));
  const hasInline = pieces.some((x) => x.fe.type === BTRFS_FILE_EXTENT_INLINE);
  const dstInode = getInode(fs, dst.root, dst.ino)!;
  const dstEnd = dst.offset + len;
  // an unaligned tail may only be shared when it also becomes the destination's end of file
  const tailOk = len % ss === 0n || dstEnd >= dstInode.size;
  const sameFileOverlap = src.root === dst.root && src.ino === dst.ino && src.offset < dstEnd && dst.offset < srcEnd;
  // cloning into a small inline file at offset 0 replaces its data: copying keeps it inline, as the kernel does
  const dstInline = inlineExtent(fs, dst.root, dst.ino) !== undefined && dst.offset < ss;
  const sumsDiffer = isNodatasum(fs, src.root, src.ino) !== isNodatasum(fs, dst.root, dst.ino);
  if (!aligned || !tailOk || hasInline || sameFileOverlap || dstInline || sumsDiffer) {
    copyRange(fs, writer, src, dst, len);
    return;
  }
  const span = alignUp(len, ss);
  if (dst.offset > dstInode.size) writer.zeroEofTail(dst.root, dst.ino, dstInode.size, dst.offset);
  writer.uninline(dst.root, dst.ino);
  dropFileExtents(fs, dst.root, dst.ino, dst.offset, dst.offset + span);
  for (const x of pieces) {
    const s = x.fileOffset > src.offset ? x.fileOffset : src.offset;
    const e = x.fileOffset + x.len < src.offset + span ? x.fileOffset + x.len : src.offset + span;
    if (e <= s) continue;
    insertFileExtent(fs, dst.root, dst.ino, dst.offset + (s - src.offset), {
      disk_bytenr: x.fe.disk_bytenr, disk_num_bytes: x.fe.disk_num_bytes, offset: x.fe.offset + (s - x.fileOffset),
      num_bytes: e - s, ram_bytes: x.fe.ram_bytes, compression: x.fe.compression, type: x.fe.type as 1 | 2,
    });
  }
  if (dstEnd > dstInode.size) updateInode(fs, dst.root, dst.ino, { size: dstEnd });
}

function copyRange(fs: Filesystem, writer: FileWriter, src: { root: bigint; ino: bigint; offset: bigint }, dst: { root: bigint; ino: bigint; offset: bigint }, len: bigint): void {
  // Only the source's stored data is copied; its holes become holes (a crafted clone of a huge sparse
  // range must not turn into gigabytes of written zeros). When source and destination are one file,
  // every byte is read before anything is written, so the copy sees the old content.
  const end = src.offset + len;
  const shift = dst.offset - src.offset;
  const data: [bigint, bigint][] = [];
  for (const x of extentsIn(fs, src.root, src.ino, src.offset, end)) {
    if (x.fe.type !== BTRFS_FILE_EXTENT_INLINE && (x.fe.type === BTRFS_FILE_EXTENT_PREALLOC || x.fe.disk_bytenr === 0n)) continue;
    const s = x.fileOffset > src.offset ? x.fileOffset : src.offset;
    const e = x.fileOffset + x.len < end ? x.fileOffset + x.len : end;
    if (e > s) data.push([s, e]);
  }
  const sameFile = src.ino === dst.ino && src.root === dst.root;
  const held: [bigint, Uint8Array][] = [];
  for (const [s, e] of data) {
    for (let o = s; o < e; o += BigInt(COPY_CHUNK)) {
      const bytes = readRange(fs, src.root, src.ino, o, Number(e - o < BigInt(COPY_CHUNK) ? e - o : BigInt(COPY_CHUNK)));
      if (sameFile) held.push([o + shift, bytes]);
      else {
        writer.write(dst.root, dst.ino, o + shift, bytes);
        writer.flushFile(dst.root, dst.ino);
      }
    }
  }
  // the source's holes: zero whatever the destination stores there
  let pos = src.offset;
  for (const [s, e] of [...data, [end, end] as [bigint, bigint]]) {
    if (s > pos && hasData(fs, dst.root, dst.ino, pos + shift, s + shift)) writer.zeroRange(dst.root, dst.ino, pos + shift, s + shift);
    pos = e;
  }
  for (const [at, bytes] of held) {
    writer.write(dst.root, dst.ino, at, bytes);
    writer.flushFile(dst.root, dst.ino);
  }
  if (dst.offset + len > getInode(fs, dst.root, dst.ino)!.size) writer.truncate(dst.root, dst.ino, dst.offset + len);
}

/** Whether any byte of [start, end) comes from stored data (not a hole or a preallocated range). */
function hasData(fs: Filesystem, root: bigint, ino: bigint, start: bigint, end: bigint): boolean {
  return extentsIn(fs, root, ino, start, end).some((x) => x.fe.type === BTRFS_FILE_EXTENT_INLINE || (x.fe.type !== BTRFS_FILE_EXTENT_PREALLOC && x.fe.disk_bytenr !== 0n));
}
