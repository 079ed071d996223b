import { ImageError } from '../../errors.js';
import {
  U64_MAX, BTRFS_COMPRESS_LZO, BTRFS_COMPRESS_NONE, BTRFS_COMPRESS_ZSTD, BTRFS_EXTENT_DATA_KEY,
  BTRFS_FEATURE_INCOMPAT_COMPRESS_LZO, BTRFS_FEATURE_INCOMPAT_COMPRESS_ZSTD, BTRFS_FILE_EXTENT_INLINE,
  BTRFS_FILE_EXTENT_PREALLOC, BTRFS_FILE_EXTENT_REG, BTRFS_INODE_NODATACOW, BTRFS_INODE_NODATASUM,
} from '../structs/constants.js';
import {
  BTRFS_FILE_EXTENT_INLINE_DATA_START, type BtrfsKey, decodeFileExtentItem, encodeFileExtentItem,
} from '../structs/fs-items.js';
import { maxItemSize } from './btree.js';
import { addDataCsums, addDataExtent, addDataRef, addNewDataExtent, dropDataRef, hasDataExtent } from './extents.js';
import type { Filesystem } from './filesystem.js';
import { noteFileChange } from './holes.js';
import { getInode, updateInode } from './inode.js';
import { checkFileNbytes } from './nbytes-check.js';

/**
 * File contents: inline extents, regular / preallocated / compressed extents and their references.
 * Holes are implicit here (on images without NO_HOLES, holes.ts adds their items before each commit).
 * These helpers maintain the inode's nbytes (which btrfs check recomputes from the extents) but never
 * i_size: the caller knows the file size (truncate, sparse tails).
 */
export const BTRFS_MAX_EXTENT_SIZE = 128n * 1024n * 1024n;

/** Largest file that is stored inline (mkfs.btrfs: below one sector and within one leaf item). */
export function maxInlineSize(fs: Filesystem): number {
  return Math.min(fs.sectorsize - 1, maxItemSize(fs.nodesize) - BTRFS_FILE_EXTENT_INLINE_DATA_START);
}

const extentKey = (ino: bigint, fileOffset: bigint): BtrfsKey => ({ objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: fileOffset });

/** `size`: the file's new i_size, set in the same update (a file appended to changes both). */
function addNbytes(fs: Filesystem, root: bigint, ino: bigint, delta: bigint, size?: bigint): void {
  if (delta === 0n && size === undefined) return;
  const inode = getInode(fs, root, ino);
  if (!inode) throw new ImageError('IMAGE_NO_INODE', `inode ${ino} does not exist in tree ${root}`);
  checkFileNbytes(fs, root, ino, inode, delta);
  updateInode(fs, root, ino, size === undefined ? { nbytes: inode.nbytes + delta } : { nbytes: inode.nbytes + delta, size });
}

function noteCompression(fs: Filesystem, compression: number): void {
  if (compression === BTRFS_COMPRESS_LZO) fs.sb.incompat_flags |= BTRFS_FEATURE_INCOMPAT_COMPRESS_LZO;
  if (compression === BTRFS_COMPRESS_ZSTD) fs.sb.incompat_flags |= BTRFS_FEATURE_INCOMPAT_COMPRESS_ZSTD;
}

/**
 * Inline extent at file offset 0. `data` is what is stored (compressed bytes when `compression` is set,
 * then `ramBytes` is the decompressed length).
 */
export function writeInlineExtent(fs: Filesystem, root: bigint, ino: bigint, data: Uint8Array, compression = BTRFS_COMPRESS_NONE, ramBytes = data.length): void {
  if (data.length === 0) throw new ImageError('IMAGE_BAD_EXTENT', 'inline extent without data');
  if (data.length > maxItemSize(fs.nodesize) - BTRFS_FILE_EXTENT_INLINE_DATA_START) {
    throw new ImageError('IMAGE_INLINE_TOO_BIG', `inline extent of ${data.length} bytes does not fit a leaf`);
  }
  if (fs.tree(root).get(extentKey(ino, 0n))) throw new ImageError('IMAGE_EXTENT_OVERLAP', `inode ${ino} already has an extent at 0`);
  noteCompression(fs, compression);
  fs.tree(root).put(extentKey(ino, 0n), encodeFileExtentItem({
    generation: fs.transid, ram_bytes: BigInt(ramBytes), compression, encryption: 0, other_encoding: 0,
    type: BTRFS_FILE_EXTENT_INLINE, disk_bytenr: 0n, disk_num_bytes: 0n, offset: 0n, num_bytes: 0n, inline_data: data,
  }));
  addNbytes(fs, root, ino, BigInt(ramBytes));
}

export interface FileExtentRef {
  /** Logical start of the data extent on disk (0 = explicit hole). */
  disk_bytenr: bigint;
  disk_num_bytes: bigint;
  /** Offset into the (decompressed) extent where this file range starts. */
  offset: bigint;
  num_bytes: bigint;
  ram_bytes: bigint;
  compression?: number;
  type?: typeof BTRFS_FILE_EXTENT_REG | typeof BTRFS_FILE_EXTENT_PREALLOC;
  /** The data extent was allocated in this transaction and this is its first reference (addNewDataExtent). */
  fresh?: boolean;
  /** The file's new i_size, set with its nbytes (file-data.ts leaves i_size to the caller otherwise). */
  size?: bigint;
}

/**
 * Point file range [fileOffset, fileOffset+num_bytes) at (part of) a data extent. The first reference
 * creates the extent's EXTENT_ITEM; later ones (reflinks, split extents) add back references.
 */
export function insertFileExtent(fs: Filesystem, root: bigint, ino: bigint, fileOffset: bigint, x: FileExtentRef): void {
  const ss = BigInt(fs.sectorsize);
  if (fileOffset % ss !== 0n || x.num_bytes % ss !== 0n || x.num_bytes === 0n || x.offset + x.num_bytes > x.ram_bytes) {
    throw new ImageError('IMAGE_BAD_EXTENT', `bad file extent at ${fileOffset}: ${x.num_bytes} bytes at offset ${x.offset} of ${x.ram_bytes}`);
  }
  const compression = x.compression ?? BTRFS_COMPRESS_NONE;
  const item = encodeFileExtentItem({
    generation: fs.transid, ram_bytes: x.ram_bytes, compression, encryption: 0, other_encoding: 0,
    type: x.type ?? BTRFS_FILE_EXTENT_REG, disk_bytenr: x.disk_bytenr, disk_num_bytes: x.disk_num_bytes,
    offset: x.offset, num_bytes: x.num_bytes,
  });
  if (!fs.tree(root).insert(extentKey(ino, fileOffset), item)) throw new ImageError('IMAGE_EXTENT_OVERLAP', `inode ${ino} already has an extent at ${fileOffset}`);
  noteCompression(fs, compression);
  if (x.disk_bytenr === 0n) {
    if (x.size !== undefined) updateInode(fs, root, ino, { size: x.size });
    return;
  }
  const refOffset = BigInt.asUintN(64, fileOffset - x.offset);
  if (x.fresh) addNewDataExtent(fs, x.disk_bytenr, x.disk_num_bytes, root, ino, refOffset);
  else if (hasDataExtent(fs, x.disk_bytenr)) addDataRef(fs, x.disk_bytenr, root, ino, refOffset);
  else addDataExtent(fs, x.disk_bytenr, x.disk_num_bytes, root, ino, refOffset);
  addNbytes(fs, root, ino, x.num_bytes, x.size);
}

/**
 * Whether inode `ino` keeps no data checksums (BTRFS_INODE_NODATASUM: `chattr +C`, the nodatacow or
 * nodatasum mount options): the kernel writes its extents without csum items (btrfs_submit_chunk), and
 * btrfs check reports an "odd csum item" for one that has them. A snapshot of a kernel-made subvolume
 * hands such files to a receive.
 */
export function isNodatasum(fs: Filesystem, root: bigint, ino: bigint): boolean {
  return ((getInode(fs, root, ino)?.flags ?? 0n) & BTRFS_INODE_NODATASUM) !== 0n;
}

/**
 * Whether the kernel would compress writes to inode `ino`: never with NODATACOW or NODATASUM
 * (btrfs_inode_can_compress), whatever the compress mount option says.
 */
export function canCompress(fs: Filesystem, root: bigint, ino: bigint): boolean {
  return ((getInode(fs, root, ino)?.flags ?? 0n) & (BTRFS_INODE_NODATACOW | BTRFS_INODE_NODATASUM)) === 0n;
}

/**
 * Write a new extent holding `data` at `fileOffset`: allocate, write to the device, checksum (unless the
 * inode is NODATASUM), reference.
 * With `compression`, `data` is the compressed bytes and `ramBytes` the uncompressed length;
 * `rawCrcs` are raw CRC32Cs of its first sectors the caller already has (see addDataCsums).
 * Returns the extent's bytenr.
 */
export function writeDataExtent(
  fs: Filesystem, root: bigint, ino: bigint, fileOffset: bigint, data: Uint8Array,
  compression = BTRFS_COMPRESS_NONE, ramBytes = data.length, rawCrcs?: Uint32Array,
): bigint {
  const ss = BigInt(fs.sectorsize);
  const ram = ((BigInt(ramBytes) + ss - 1n) / ss) * ss;
  if (ram > BTRFS_MAX_EXTENT_SIZE) throw new ImageError('IMAGE_EXTENT_TOO_BIG', `extent of ${ram} bytes exceeds 128 MiB`);
  const diskLen = ((BigInt(data.length) + ss - 1n) / ss) * ss;
  const bytenr = fs.allocData(diskLen);
  const padded = data.length === Number(diskLen) ? data : padTo(data, Number(diskLen));
  fs.writeData(bytenr, padded);
  if (!isNodatasum(fs, root, ino)) addDataCsums(fs, bytenr, padded, rawCrcs, true);
  insertFileExtent(fs, root, ino, fileOffset, { disk_bytenr: bytenr, disk_num_bytes: diskLen, offset: 0n, num_bytes: ram, ram_bytes: ram, compression, fresh: true });
  return bytenr;
}

/** A preallocated (fallocate) extent: space reserved, reads as zeros, no checksums. */
export function writePreallocExtent(fs: Filesystem, root: bigint, ino: bigint, fileOffset: bigint, length: bigint): bigint {
  const ss = BigInt(fs.sectorsize);
  const len = ((length + ss - 1n) / ss) * ss;
  const bytenr = fs.allocData(len);
  insertFileExtent(fs, root, ino, fileOffset, { disk_bytenr: bytenr, disk_num_bytes: len, offset: 0n, num_bytes: len, ram_bytes: len, type: BTRFS_FILE_EXTENT_PREALLOC, fresh: true });
  return bytenr;
}

/** Removes an inode that no name refers to any more: its extents (dropping data refs), xattrs, everything. */
export function deleteInode(fs: Filesystem, root: bigint, ino: bigint): void {
  dropFileExtents(fs, root, ino, 0n);
  const t = fs.tree(root);
  for (const it of t.range({ objectid: ino, type: 0, offset: 0n }, { objectid: ino, type: 255, offset: U64_MAX })) t.delete(it.key);
}

/**
 * Remove file range [start, end) from `ino`'s extents (truncate, punch hole, overwrite): extents inside
 * are dropped, extents crossing an edge are split (each part keeps a reference to the same extent).
 * `start` and `end` must be sector aligned except `end` = U64_MAX (to EOF) or an inline tail cut.
 */
export function dropFileExtents(fs: Filesystem, root: bigint, ino: bigint, start: bigint, end: bigint = U64_MAX): void {
  const t = fs.tree(root);
  noteFileChange(fs, root, ino); // even dropping only hole items leaves a gap
  const before = t.last(extentKey(ino, start), extentKey(ino, 0n));
  const items = end > 0n ? t.range(extentKey(ino, start), extentKey(ino, end - 1n)) : [];
  if (before && (items.length === 0 || items[0]!.key.offset !== before.key.offset)) items.unshift(before);
  const ss = BigInt(fs.sectorsize);
  for (const it of items) {
    const fe = decodeFileExtentItem(it.data);
    const s = it.key.offset;
    if (fe.type === BTRFS_FILE_EXTENT_INLINE) {
      const len = fe.ram_bytes;
      if (s + len <= start || s >= end) continue;
      if (start <= s && end >= s + len) {
        t.delete(it.key);
        addNbytes(fs, root, ino, -len);
      } else if (start > s && end >= s + len && fe.compression === BTRFS_COMPRESS_NONE) {
        const keep = fe.inline_data!.slice(0, Number(start - s));
        t.put(it.key, encodeFileExtentItem({ ...fe, ram_bytes: BigInt(keep.length), inline_data: keep }));
        addNbytes(fs, root, ino, BigInt(keep.length) - len);
      } else {
        throw new ImageError('IMAGE_UNSUPPORTED', `cannot cut [${start}, ${end}) out of an inline extent of inode ${ino}`);
      }
      continue;
    }
    const e = s + fe.num_bytes;
    if (e <= start || s >= end) continue;
    if ((start > s && start % ss !== 0n) || (end < e && end % ss !== 0n)) {
      throw new ImageError('IMAGE_UNALIGNED', `extent split at unaligned offset in inode ${ino} ([${start}, ${end}))`);
    }
    t.delete(it.key);
    let parts = 0;
    let kept = 0n;
    if (s < start) {
      t.put(it.key, encodeFileExtentItem({ ...fe, num_bytes: start - s }));
      parts++;
      kept += start - s;
    }
    if (e > end) {
      t.put(extentKey(ino, end), encodeFileExtentItem({ ...fe, offset: fe.offset + (end - s), num_bytes: e - end }));
      parts++;
      kept += e - end;
    }
    if (fe.disk_bytenr !== 0n) {
      const refOffset = BigInt.asUintN(64, s - fe.offset);
      if (parts === 0) dropDataRef(fs, fe.disk_bytenr, root, ino, refOffset);
      if (parts === 2) addDataRef(fs, fe.disk_bytenr, root, ino, refOffset);
      addNbytes(fs, root, ino, kept - fe.num_bytes);
    }
  }
}

function padTo(data: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(len);
  out.set(data);
  return out;
}
