import { BTRFS_COMPRESS_NONE, decodeExtent } from '../compress/index.js';
import { U64_MAX, BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_FILE_EXTENT_PREALLOC } from '../image/structs/constants.js';
import { type BtrfsFileExtentItem, decodeFileExtentItem, fileExtentNumBytes } from '../image/structs/fs-items.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { getInode } from '../image/write/inode.js';

/** A file extent item with its file offset. */
export interface FileExtent {
  fileOffset: bigint;
  fe: BtrfsFileExtentItem;
  /** File bytes it covers (inline: its decoded length). */
  len: bigint;
}

/** Extent items of `ino` that overlap [start, end), in file order. */
export function extentsIn(fs: Filesystem, root: bigint, ino: bigint, start: bigint, end: bigint): FileExtent[] {
  if (end <= start) return [];
  const t = fs.tree(root);
  const key = (o: bigint) => ({ objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: o });
  const out: FileExtent[] = [];
  const before = t.last(key(start), key(0n));
  const items = t.range(key(start), key(end - 1n));
  if (before && (items.length === 0 || items[0]!.key.offset !== before.key.offset)) items.unshift(before);
  for (const it of items) {
    const fe = decodeFileExtentItem(it.data);
    const len = fe.type === BTRFS_FILE_EXTENT_INLINE ? fe.ram_bytes : fe.num_bytes;
    if (it.key.offset + len <= start || it.key.offset >= end) continue;
    out.push({ fileOffset: it.key.offset, fe, len });
  }
  return out;
}

/** Decoded bytes of a whole extent's content as the file sees it from `fe.offset` (compressed: decoded). */
function extentBytes(fs: Filesystem, fe: BtrfsFileExtentItem, from: bigint, len: number): Uint8Array {
  if (fe.type === BTRFS_FILE_EXTENT_INLINE) {
    const raw = fe.inline_data ?? new Uint8Array(0);
    const plain = fe.compression === BTRFS_COMPRESS_NONE ? raw : decodeExtent(fe.compression, raw, Number(fe.ram_bytes), fs.sectorsize).out;
    return plain.subarray(Number(from), Number(from) + len);
  }
  if (fe.type === BTRFS_FILE_EXTENT_PREALLOC || fe.disk_bytenr === 0n) return new Uint8Array(len);
  if (fe.compression === BTRFS_COMPRESS_NONE) return fs.readData(fe.disk_bytenr + fe.offset + from, len);
  const raw = fs.readData(fe.disk_bytenr, Number(fe.disk_num_bytes));
  const plain = decodeExtent(fe.compression, raw, Number(fe.ram_bytes), fs.sectorsize).out;
  const o = Number(fe.offset + from);
  return plain.subarray(o, o + len);
}

/**
 * The file's bytes in [start, start+len) as the kernel would read them from the state being built: holes,
 * preallocated ranges and anything past the extents read as zeros. Used for read-modify-write of partial
 * sectors and for clones that cannot share extents.
 */
export function readRange(fs: Filesystem, root: bigint, ino: bigint, start: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  // past i_size the file reads as zeros even where an extent still holds old bytes: the kernel does not
  // rewrite the last block when it shrinks a file (see FileWriter.zeroEofTail for when it does)
  const isize = getInode(fs, root, ino)?.size ?? 0n;
  const stop = start + BigInt(len);
  const end = stop < isize ? stop : isize;
  for (const x of extentsIn(fs, root, ino, start, end)) {
    const s = x.fileOffset > start ? x.fileOffset : start;
    const e = x.fileOffset + x.len < end ? x.fileOffset + x.len : end;
    const bytes = extentBytes(fs, x.fe, s - x.fileOffset, Number(e - s));
    out.set(bytes, Number(s - start));
  }
  return out;
}

/** The inline extent of a file, if its data lives in the leaf. */
export function inlineExtent(fs: Filesystem, root: bigint, ino: bigint): FileExtent | undefined {
  const b = fs.tree(root).get({ objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: 0n });
  if (!b) return undefined;
  const fe = decodeFileExtentItem(b);
  return fe.type === BTRFS_FILE_EXTENT_INLINE ? { fileOffset: 0n, fe, len: fe.ram_bytes } : undefined;
}

/**
 * Whether all of the file's extents end at or before `offset` and the last is not inline: a write there
 * has nothing to cut and no inline extent to convert first (an inline extent is its file's only one) —
 * one search, where asking both questions costs three. True for a file without extents.
 */
export function extentsEndBy(fs: Filesystem, root: bigint, ino: bigint, offset: bigint): boolean {
  const it = fs.tree(root).last({ objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: U64_MAX }, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: 0n });
  if (!it) return true;
  const numBytes = fileExtentNumBytes(it.data);
  return numBytes !== undefined && it.key.offset + numBytes <= offset;
}

/** Whether the file has any extent starting at or after `from`. */
export function hasExtentsFrom(fs: Filesystem, root: bigint, ino: bigint, from: bigint): boolean {
  return fs.tree(root).first({ objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: from }, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: U64_MAX }) !== undefined;
}
