import { ReceiveError } from '../errors.js';
import { BTRFS_FILE_EXTENT_INLINE } from '../image/structs/constants.js';
import { dropFileExtents, insertFileExtent } from '../image/write/file-data.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { getInode, updateInode } from '../image/write/inode.js';
import { extentsIn, inlineExtent, readRange } from './file-read.js';
import { alignUp, type FileWriter } from './file-write.js';

/** Copy through memory in pieces of this size when extents cannot be shared. */
const COPY_CHUNK = 1 << 20;

/**
 * CLONE: the destination range gets references to the source's extents (a reflink: no data is copied,
 * reference counts go up), as the kernel's clone ioctl does. Where sharing is impossible — unaligned
 * ranges, inline source data — the bytes are copied instead, which reads the same.
 */
export function cloneRange(
  fs: Filesystem, writer: FileWriter,
  src: { root: bigint; ino: bigint; offset: bigint },
  dst: { root: bigint; ino: bigint; offset: bigint },
  len: bigint,
): void {
  writer.flush();
  const ss = BigInt(fs.sectorsize);
  const srcInode = getInode(fs, src.root, src.ino)!;
  if (src.offset + len > srcInode.size) {
    throw new ReceiveError('clone-out-of-range', `clone source range ${src.offset}+${len} is past the source's end (${srcInode.size})`);
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
  const dstInline = inlineExtent(fs, dst.root, dst.ino) !== undefined;
  if (!aligned || !tailOk || hasInline || sameFileOverlap || dstInline) {
    copyRange(fs, writer, src, dst, len);
    return;
  }
  const span = alignUp(len, ss);
  if (dst.offset > dstInode.size) writer.zeroEofTail(dst.root, dst.ino, dstInode.size, dst.offset);
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
  // read everything first when source and destination are one file, so the copy sees the old bytes
  const chunks: [bigint, Uint8Array][] = [];
  for (let o = 0n; o < len; o += BigInt(COPY_CHUNK)) {
    const n = len - o < BigInt(COPY_CHUNK) ? Number(len - o) : COPY_CHUNK;
    const bytes = readRange(fs, src.root, src.ino, src.offset + o, n);
    if (src.ino === dst.ino && src.root === dst.root) chunks.push([o, bytes]);
    else {
      writer.write(dst.root, dst.ino, dst.offset + o, bytes);
      writer.flush();
    }
  }
  for (const [o, bytes] of chunks) {
    writer.write(dst.root, dst.ino, dst.offset + o, bytes);
    writer.flush();
  }
}
