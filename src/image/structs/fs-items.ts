import { u32At, u64At } from '../../util/bytes.js';
import { encoded, itemWriter, LeReader, LeWriter } from './bytes.js';

/**
 * Items of the fs trees (subvolumes): keys, inodes, names, directory entries, xattrs, file extents.
 * Field names follow struct btrfs_* in kernel-shared/uapi/btrfs_tree.h.
 */

export interface BtrfsKey {
  objectid: bigint;
  type: number;
  offset: bigint;
}
export const BTRFS_DISK_KEY_SIZE = 17;

export function readDiskKey(r: LeReader): BtrfsKey {
  return { objectid: r.u64(), type: r.u8(), offset: r.u64() };
}
export function writeDiskKey(w: LeWriter, k: BtrfsKey): void {
  w.u64(k.objectid);
  w.u8(k.type);
  w.u64(k.offset);
}
/** The disk key at byte `p` of `dv` (a tree block's item header or key pointer), read in place. */
export function diskKeyAt(dv: DataView, p: number): BtrfsKey {
  return { objectid: dv.getBigUint64(p, true), type: dv.getUint8(p + 8), offset: dv.getBigUint64(p + 9, true) };
}
export function decodeDiskKey(b: Uint8Array, off = 0): BtrfsKey {
  return readDiskKey(new LeReader(b, off, 'btrfs_disk_key'));
}
export function encodeDiskKey(k: BtrfsKey): Uint8Array {
  const out = new Uint8Array(BTRFS_DISK_KEY_SIZE);
  writeDiskKey(new LeWriter(out), k);
  return out;
}
/** Tree order: objectid, then type, then offset, all unsigned. */
export function compareKeys(a: BtrfsKey, b: BtrfsKey): number {
  if (a.objectid !== b.objectid) return a.objectid < b.objectid ? -1 : 1;
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  if (a.offset !== b.offset) return a.offset < b.offset ? -1 : 1;
  return 0;
}
export function formatKey(k: BtrfsKey): string {
  return `(${k.objectid} ${k.type} ${k.offset})`;
}

export interface BtrfsTimespec {
  sec: bigint;
  nsec: number;
}
/** Seconds are signed on disk (btrfs_timespec.sec is __le64 holding a time64_t): 1969 is -1. */
/** Nanoseconds since the epoch (negative before 1970); any {sec, nsec} (a send stream's Timespec too). */
export function timespecNs(t: { sec: bigint; nsec: number }): bigint {
  return t.sec * 1_000_000_000n + BigInt(t.nsec);
}

export function readTimespec(r: LeReader): BtrfsTimespec {
  return { sec: BigInt.asIntN(64, r.u64()), nsec: r.u32() };
}
export function writeTimespec(w: LeWriter, t: BtrfsTimespec): void {
  w.u64(BigInt.asUintN(64, t.sec));
  w.u32(t.nsec);
}

export interface BtrfsInodeItem {
  generation: bigint;
  transid: bigint;
  size: bigint;
  nbytes: bigint;
  block_group: bigint;
  nlink: number;
  uid: number;
  gid: number;
  mode: number;
  rdev: bigint;
  flags: bigint;
  sequence: bigint;
  atime: BtrfsTimespec;
  ctime: BtrfsTimespec;
  mtime: BtrfsTimespec;
  otime: BtrfsTimespec;
}
export const BTRFS_INODE_ITEM_SIZE = 160;

export function readInodeItem(r: LeReader): BtrfsInodeItem {
  const generation = r.u64(), transid = r.u64(), size = r.u64(), nbytes = r.u64(), block_group = r.u64();
  const nlink = r.u32(), uid = r.u32(), gid = r.u32(), mode = r.u32();
  const rdev = r.u64(), flags = r.u64(), sequence = r.u64();
  r.skip(32); // reserved[4]
  const atime = readTimespec(r), ctime = readTimespec(r), mtime = readTimespec(r), otime = readTimespec(r);
  return { generation, transid, size, nbytes, block_group, nlink, uid, gid, mode, rdev, flags, sequence, atime, ctime, mtime, otime };
}
export function writeInodeItem(w: LeWriter, i: BtrfsInodeItem): void {
  w.u64(i.generation); w.u64(i.transid); w.u64(i.size); w.u64(i.nbytes); w.u64(i.block_group);
  w.u32(i.nlink); w.u32(i.uid); w.u32(i.gid); w.u32(i.mode);
  w.u64(i.rdev); w.u64(i.flags); w.u64(i.sequence);
  w.bytes(new Uint8Array(0), 32);
  writeTimespec(w, i.atime); writeTimespec(w, i.ctime); writeTimespec(w, i.mtime); writeTimespec(w, i.otime);
}
export function decodeInodeItem(b: Uint8Array, off = 0): BtrfsInodeItem {
  return readInodeItem(new LeReader(b, off, 'btrfs_inode_item'));
}

/** What tells one inode from another: generation, nlink and mode, read in place (no whole decode). */
export interface InodeIdentity {
  generation: bigint;
  nlink: number;
  mode: number;
}

/** generation, nlink and mode of an INODE_ITEM; a short item is refused as decodeInodeItem refuses it. */
export function inodeIdentity(b: Uint8Array): InodeIdentity {
  if (b.length < BTRFS_INODE_ITEM_SIZE) decodeInodeItem(b); // throws
  return { generation: u64At(b, 0), nlink: u32At(b, 40), mode: u32At(b, 52) };
}
export function encodeInodeItem(i: BtrfsInodeItem): Uint8Array {
  const w = itemWriter(BTRFS_INODE_ITEM_SIZE);
  writeInodeItem(w, i);
  return encoded(w);
}

/** One name of an inode in its parent (key: inode, INODE_REF, parent dir). Several may share one item. */
export interface BtrfsInodeRef {
  index: bigint;
  name: Uint8Array;
}
export function decodeInodeRefs(b: Uint8Array): BtrfsInodeRef[] {
  const r = new LeReader(b, 0, 'btrfs_inode_ref');
  const out: BtrfsInodeRef[] = [];
  while (r.pos < b.length) {
    const index = r.u64();
    const len = r.u16();
    out.push({ index, name: r.bytes(len) });
  }
  return out;
}
export function encodeInodeRefs(refs: BtrfsInodeRef[]): Uint8Array {
  const w = itemWriter(refs.reduce((n, x) => n + 10 + x.name.length, 0));
  for (const x of refs) {
    w.u64(x.index); w.u16(x.name.length); w.bytes(x.name);
  }
  return encoded(w);
}

/** Extended ref (key: inode, INODE_EXTREF, hash(parent, name)), used when INODE_REF overflows. */
export interface BtrfsInodeExtref {
  parent_objectid: bigint;
  index: bigint;
  name: Uint8Array;
}
export function decodeInodeExtrefs(b: Uint8Array): BtrfsInodeExtref[] {
  const r = new LeReader(b, 0, 'btrfs_inode_extref');
  const out: BtrfsInodeExtref[] = [];
  while (r.pos < b.length) {
    const parent_objectid = r.u64(), index = r.u64(), len = r.u16();
    out.push({ parent_objectid, index, name: r.bytes(len) });
  }
  return out;
}
export function encodeInodeExtrefs(refs: BtrfsInodeExtref[]): Uint8Array {
  const out = new Uint8Array(refs.reduce((n, x) => n + 18 + x.name.length, 0));
  const w = new LeWriter(out);
  for (const x of refs) {
    w.u64(x.parent_objectid); w.u64(x.index); w.u16(x.name.length); w.bytes(x.name);
  }
  return out;
}

/** DIR_ITEM / DIR_INDEX / XATTR_ITEM payload; `data` is the xattr value (empty for dir entries). */
export interface BtrfsDirItem {
  location: BtrfsKey;
  transid: bigint;
  type: number;
  name: Uint8Array;
  data: Uint8Array;
}
export const BTRFS_DIR_ITEM_SIZE = 30;
export function decodeDirItems(b: Uint8Array): BtrfsDirItem[] {
  const r = new LeReader(b, 0, 'btrfs_dir_item');
  const out: BtrfsDirItem[] = [];
  while (r.pos < b.length) {
    const location = readDiskKey(r), transid = r.u64(), data_len = r.u16(), name_len = r.u16(), type = r.u8();
    const name = r.bytes(name_len);
    out.push({ location, transid, type, name, data: r.bytes(data_len) });
  }
  return out;
}
export function encodeDirItems(items: BtrfsDirItem[]): Uint8Array {
  const w = itemWriter(items.reduce((n, x) => n + BTRFS_DIR_ITEM_SIZE + x.name.length + x.data.length, 0));
  for (const x of items) {
    writeDiskKey(w, x.location); w.u64(x.transid); w.u16(x.data.length); w.u16(x.name.length); w.u8(x.type);
    w.bytes(x.name); w.bytes(x.data);
  }
  return encoded(w);
}

/**
 * EXTENT_DATA payload. Inline extents end at `disk_bytenr` (offset 21): their data follows there and the
 * other fields are absent, hence the separate `inline_data`.
 */
export interface BtrfsFileExtentItem {
  generation: bigint;
  ram_bytes: bigint;
  compression: number;
  encryption: number;
  other_encoding: number;
  type: number;
  disk_bytenr: bigint;
  disk_num_bytes: bigint;
  offset: bigint;
  num_bytes: bigint;
  inline_data?: Uint8Array;
}
export const BTRFS_FILE_EXTENT_INLINE_DATA_START = 21;
export const BTRFS_FILE_EXTENT_ITEM_SIZE = 53;
export function decodeFileExtentItem(b: Uint8Array): BtrfsFileExtentItem {
  if (b.length >= BTRFS_FILE_EXTENT_ITEM_SIZE && b[20] !== 0) {
    // a regular or prealloc extent (53 bytes: on V8's heap when made here, see u64At)
    return {
      generation: u64At(b, 0), ram_bytes: u64At(b, 8), compression: b[16]!, encryption: b[17]!, other_encoding: b[18]! | (b[19]! << 8), type: b[20]!,
      disk_bytenr: u64At(b, 21), disk_num_bytes: u64At(b, 29), offset: u64At(b, 37), num_bytes: u64At(b, 45),
    };
  }
  const r = new LeReader(b, 0, 'btrfs_file_extent_item');
  const generation = r.u64(), ram_bytes = r.u64(), compression = r.u8(), encryption = r.u8();
  const other_encoding = r.u16(), type = r.u8();
  if (type === 0) {
    return {
      generation, ram_bytes, compression, encryption, other_encoding, type,
      disk_bytenr: 0n, disk_num_bytes: 0n, offset: 0n, num_bytes: 0n,
      inline_data: b.slice(BTRFS_FILE_EXTENT_INLINE_DATA_START),
    };
  }
  const disk_bytenr = r.u64(), disk_num_bytes = r.u64(), offset = r.u64(), num_bytes = r.u64();
  return { generation, ram_bytes, compression, encryption, other_encoding, type, disk_bytenr, disk_num_bytes, offset, num_bytes };
}
/** num_bytes of a regular or prealloc extent item read in place (no decoded object); undefined for an inline one. */
export function fileExtentNumBytes(b: Uint8Array): bigint | undefined {
  if (b.length >= BTRFS_FILE_EXTENT_ITEM_SIZE && b[20] !== 0) return u64At(b, 45);
  const fe = decodeFileExtentItem(b); // inline, or too short (its error)
  return fe.type === 0 ? undefined : fe.num_bytes;
}
export function encodeFileExtentItem(x: BtrfsFileExtentItem): Uint8Array {
  const inline = x.type === 0;
  const w = itemWriter(inline ? BTRFS_FILE_EXTENT_INLINE_DATA_START + (x.inline_data?.length ?? 0) : BTRFS_FILE_EXTENT_ITEM_SIZE);
  w.u64(x.generation); w.u64(x.ram_bytes); w.u8(x.compression); w.u8(x.encryption); w.u16(x.other_encoding); w.u8(x.type);
  if (inline) {
    w.bytes(x.inline_data ?? new Uint8Array(0));
  } else {
    w.u64(x.disk_bytenr); w.u64(x.disk_num_bytes); w.u64(x.offset); w.u64(x.num_bytes);
  }
  return encoded(w);
}

/** EXTENT_CSUM payload: one crc32c per sector starting at key.offset (logical bytenr). */
export function decodeCsumItem(b: Uint8Array, csumSize = 4): Uint32Array {
  const n = Math.floor(b.length / csumSize);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = v.getUint32(i * csumSize, true);
  return out;
}
export function encodeCsumItem(csums: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(csums.length * 4);
  const v = new DataView(out.buffer);
  for (let i = 0; i < csums.length; i++) v.setUint32(i * 4, (csums[i] ?? 0) >>> 0, true);
  return out;
}
