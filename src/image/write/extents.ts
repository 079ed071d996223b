import { ImageError } from '../../errors.js';
import { crc32cRaw } from '../../util/crc32c.js';
import {
  U64_MAX, BTRFS_CSUM_TREE_OBJECTID, BTRFS_CSUM_TYPE_CRC32, BTRFS_EXTENT_CSUM_KEY, BTRFS_EXTENT_CSUM_OBJECTID, BTRFS_EXTENT_DATA_REF_KEY,
  BTRFS_EXTENT_FLAG_DATA, BTRFS_EXTENT_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_SHARED_DATA_REF_KEY,
} from '../structs/constants.js';
import {
  type BtrfsExtentDataRef, decodeExtentDataRef, decodeExtentItem, decodeSharedDataRef, encodeExtentDataRef, encodeExtentItem,
  encodeSharedDataRef,
} from '../structs/tree-items.js';
import { BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE } from '../structs/tree-block.js';
import { csumAlgo } from '../structs/csum.js';
import type { FilesystemModel } from './model.js';
import { RangeSet } from './ranges.js';
import type { Key } from './items.js';

/**
 * Data extent bookkeeping in the extent tree (EXTENT_ITEM + data back references) and the csum tree.
 *
 * Back references are kept in one canonical form: a single (root, inode, offset) owner is stored inline
 * in the EXTENT_ITEM (what the kernel writes for an unshared extent); several owners are stored as keyed
 * EXTENT_DATA_REF items, which the kernel and btrfs check accept for any extent and which avoids
 * the inline-ref ordering rules entirely.
 */

/** hash_extent_data_ref: key offset of a keyed EXTENT_DATA_REF. Note the shift is 31, as in the kernel. */
export function hashExtentDataRef(root: bigint, objectid: bigint, offset: bigint): bigint {
  const le = (v: bigint): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return b;
  };
  const high = BigInt(crc32cRaw(le(root), 0xffffffff));
  const low = BigInt(crc32cRaw(le(offset), crc32cRaw(le(objectid), 0xffffffff)));
  return ((high << 31n) ^ low) & U64_MAX;
}

export interface DataExtentInfo {
  bytenr: bigint;
  num_bytes: bigint;
  generation: bigint;
  refs: BtrfsExtentDataRef[];
  /** References by tree block address (SHARED_DATA_REF): file extent items in a FULL_BACKREF leaf. */
  shared?: Array<{ parent: bigint; count: number }>;
}

function extentKey(fs: FilesystemModel, bytenr: bigint): Key | undefined {
  return fs.tree(BTRFS_EXTENT_TREE_OBJECTID).first(
    { objectid: bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: 0n },
    { objectid: bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: U64_MAX },
  )?.key;
}

/** The data extent starting at `bytenr` with all its references, or undefined. */
export function getDataExtent(fs: FilesystemModel, bytenr: bigint): DataExtentInfo | undefined {
  const t = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
  const key = extentKey(fs, bytenr);
  if (!key) return undefined;
  const ei = decodeExtentItem(t.get(key)!, BTRFS_EXTENT_ITEM_KEY);
  const refs: BtrfsExtentDataRef[] = [];
  const shared: Array<{ parent: bigint; count: number }> = [];
  for (const r of ei.inline_refs) {
    if (r.type === BTRFS_EXTENT_DATA_REF_KEY) refs.push({ root: r.root, objectid: r.objectid, offset: r.offset, count: r.count });
    else if (r.type === BTRFS_SHARED_DATA_REF_KEY) shared.push({ parent: r.parent, count: r.count });
  }
  for (const it of t.range({ objectid: bytenr, type: BTRFS_EXTENT_DATA_REF_KEY, offset: 0n }, { objectid: bytenr, type: BTRFS_SHARED_DATA_REF_KEY, offset: U64_MAX })) {
    if (it.key.type === BTRFS_EXTENT_DATA_REF_KEY) refs.push(decodeExtentDataRef(it.data));
    else if (it.key.type === BTRFS_SHARED_DATA_REF_KEY) shared.push({ parent: it.key.offset, count: decodeSharedDataRef(it.data).count });
  }
  return { bytenr, num_bytes: key.offset, generation: ei.generation, refs, shared };
}

/** Rewrite the extent's items in canonical form; no refs left = extent freed (space pinned, csums dropped). */
export function storeDataExtent(fs: FilesystemModel, x: DataExtentInfo): void {
  const t = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
  for (const it of t.range({ objectid: x.bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: 0n }, { objectid: x.bytenr, type: BTRFS_SHARED_DATA_REF_KEY, offset: U64_MAX })) {
    t.delete(it.key);
  }
  const refs = x.refs.filter((r) => r.count > 0);
  const shared = (x.shared ?? []).filter((r) => r.count > 0);
  if (refs.length === 0 && shared.length === 0) {
    fs.space.pin(x.bytenr, x.num_bytes);
    deleteCsums(fs, x.bytenr, x.num_bytes);
    return;
  }
  const total = BigInt(refs.reduce((n, r) => n + r.count, 0) + shared.reduce((n, r) => n + r.count, 0));
  const head = { refs: total, generation: x.generation, flags: BTRFS_EXTENT_FLAG_DATA };
  const key = { objectid: x.bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: x.num_bytes };
  if (refs.length === 1 && shared.length === 0) {
    const r = refs[0]!;
    t.put(key, encodeExtentItem({ ...head, inline_refs: [{ type: BTRFS_EXTENT_DATA_REF_KEY, root: r.root, objectid: r.objectid, offset: r.offset, count: r.count }] }));
    return;
  }
  t.put(key, encodeExtentItem({ ...head, inline_refs: [] }));
  for (const r of refs) {
    const rk = { objectid: x.bytenr, type: BTRFS_EXTENT_DATA_REF_KEY, offset: hashExtentDataRef(r.root, r.objectid, r.offset) };
    if (t.get(rk)) throw new ImageError('IMAGE_REF_HASH_COLLISION', `extent data ref hash collision on extent ${x.bytenr}`);
    t.put(rk, encodeExtentDataRef(r));
  }
  for (const r of shared) t.put({ objectid: x.bytenr, type: BTRFS_SHARED_DATA_REF_KEY, offset: r.parent }, encodeSharedDataRef({ count: r.count }));
}

/** One more (or `count` fewer, when negative) reference by a FULL_BACKREF leaf at `parent`. */
export function changeSharedDataRef(fs: FilesystemModel, bytenr: bigint, parent: bigint, count: number): void {
  const x = getDataExtent(fs, bytenr);
  if (!x) throw new ImageError('IMAGE_NO_EXTENT', `no data extent at ${bytenr}`, { offset: bytenr });
  const shared = (x.shared ??= []);
  const r = shared.find((e) => e.parent === parent);
  if (count < 0 && (!r || r.count < -count)) {
    throw new ImageError('IMAGE_NO_REF', `data extent ${bytenr} has no shared reference by block ${parent} to drop`, { offset: bytenr });
  }
  if (r) r.count += count;
  else shared.push({ parent, count });
  storeDataExtent(fs, x);
}

/**
 * Record a new data extent [bytenr, bytenr+num_bytes) (space from allocData, already written) owned by
 * file `ino` of tree `root`; `offset` is the file offset the extent's byte 0 maps to (file_pos - extent offset).
 */
export function addDataExtent(fs: FilesystemModel, bytenr: bigint, num_bytes: bigint, root: bigint, ino: bigint, offset: bigint, refs = 1): void {
  if (extentKey(fs, bytenr)) throw new ImageError('IMAGE_EXTENT_EXISTS', `data extent at ${bytenr} already exists`, { offset: bytenr });
  addNewDataExtent(fs, bytenr, num_bytes, root, ino, offset, refs);
}

/**
 * addDataExtent for space allocated in this transaction (allocData), which no extent can hold: the item
 * goes in with one search instead of three, and an item already at the key (a damaged free space tree
 * handing out used space) is still refused, as the kernel's insert refuses it with -EEXIST.
 */
export function addNewDataExtent(fs: FilesystemModel, bytenr: bigint, num_bytes: bigint, root: bigint, ino: bigint, offset: bigint, refs = 1): void {
  const item = encodeExtentItem({
    refs: BigInt(refs), generation: fs.transid, flags: BTRFS_EXTENT_FLAG_DATA,
    inline_refs: [{ type: BTRFS_EXTENT_DATA_REF_KEY, root, objectid: ino, offset, count: refs }],
  });
  if (!fs.tree(BTRFS_EXTENT_TREE_OBJECTID).insert({ objectid: bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: num_bytes }, item)) {
    throw new ImageError('IMAGE_EXTENT_EXISTS', `data extent at ${bytenr} already exists`, { offset: bytenr });
  }
}

/** One more reference (file extent item) to an existing extent, e.g. a reflink/clone or a split extent. */
export function addDataRef(fs: FilesystemModel, bytenr: bigint, root: bigint, ino: bigint, offset: bigint, count = 1): void {
  const x = getDataExtent(fs, bytenr);
  if (!x) throw new ImageError('IMAGE_NO_EXTENT', `no data extent at ${bytenr}`, { offset: bytenr });
  const r = x.refs.find((e) => e.root === root && e.objectid === ino && e.offset === offset);
  if (r) r.count += count;
  else x.refs.push({ root, objectid: ino, offset, count });
  storeDataExtent(fs, x);
}

/** Drop references; returns true when the extent lost its last one and was freed. */
export function dropDataRef(fs: FilesystemModel, bytenr: bigint, root: bigint, ino: bigint, offset: bigint, count = 1): boolean {
  const x = getDataExtent(fs, bytenr);
  const r = x?.refs.find((e) => e.root === root && e.objectid === ino && e.offset === offset);
  if (!x || !r || r.count < count) {
    throw new ImageError('IMAGE_NO_REF', `data extent ${bytenr} has no reference (${root}, ${ino}, ${offset}) x${count} to drop`, { offset: bytenr });
  }
  r.count -= count;
  storeDataExtent(fs, x);
  return !x.refs.some((e) => e.count > 0) && !(x.shared ?? []).some((e) => e.count > 0);
}

// ---- checksums ----

/** Most checksums one EXTENT_CSUM item may hold (MAX_CSUM_ITEMS in the kernel). */
export function maxCsumsPerItem(nodesize: number, csumSize = 4): number {
  return Math.floor((nodesize - BTRFS_HEADER_SIZE - 2 * BTRFS_ITEM_SIZE) / csumSize) - 1;
}

const csumKey = (bytenr: bigint): Key => ({ objectid: BTRFS_EXTENT_CSUM_OBJECTID, type: BTRFS_EXTENT_CSUM_KEY, offset: bytenr });

/**
 * Checksum the on-disk bytes of data at `bytenr` (whole sectors; a short tail is zero-padded as on disk)
 * with the image's csum_type. `fresh`: the space was allocated in this transaction (allocData), so it
 * holds no checksums to replace (freeing an extent drops its checksums) and none are looked for.
 */
export function addDataCsums(fs: FilesystemModel, bytenr: bigint, bytes: Uint8Array, known?: Uint32Array, fresh = false): void {
  const ss = fs.sectorsize;
  const algo = csumAlgo(fs.sb.csum_type);
  const cs = algo.size;
  const n = Math.ceil(bytes.length / ss);
  if (!fresh && csumsIn(fs, bytenr, BigInt(n * ss))) deleteCsums(fs, bytenr, BigInt(n * ss));
  const csums = new Uint8Array(n * cs);
  // `known`: crc32c checksums of the first sectors the caller already has (receive derives them from
  // the stream's own CRC check), so those bytes are not read a second time; other csum types hash all
  const k = algo.type === BTRFS_CSUM_TYPE_CRC32 ? Math.min(n, known?.length ?? 0) : 0;
  if (k > 0) {
    const dv = new DataView(csums.buffer);
    for (let i = 0; i < k; i++) dv.setUint32(i * 4, known![i]!, true);
  }
  for (let i = k; i < n; i++) {
    let sector = bytes.subarray(i * ss, (i + 1) * ss);
    if (sector.length < ss) {
      const padded = new Uint8Array(ss);
      padded.set(sector);
      sector = padded;
    }
    algo.digestInto(sector, csums, i * cs);
  }
  putDataCsums(fs, bytenr, csums);
}

/**
 * Store checksums (the image's csum type, one per sector from `bytenr`) whose range holds none now.
 * Like btrfs_csum_file_blocks, they first extend the item that ends where they start, while it has room
 * (data allocated one extent after another — a receive — then fills items in place); the rest become
 * items of their own. What is still cut short is merged at commit (normalizeCsumTree).
 */
export function putDataCsums(fs: FilesystemModel, bytenr: bigint, csums: Uint8Array): void {
  const ss = fs.sectorsize;
  const cs = csumAlgo(fs.sb.csum_type).size;
  fs.csumTouched.add(bytenr, bytenr + BigInt(csums.length / cs) * BigInt(ss));
  const max = maxCsumsPerItem(fs.nodesize, cs) * cs;
  const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
  let off = 0;
  const prev = bytenr > 0n ? t.last(csumKey(bytenr - 1n), csumKey(0n)) : undefined;
  if (prev && prev.data.length < max && prev.key.offset + BigInt(prev.data.length / cs) * BigInt(ss) === bytenr) {
    off = Math.min(csums.length, max - prev.data.length);
    const grown = new Uint8Array(prev.data.length + off);
    grown.set(prev.data);
    grown.set(csums.subarray(0, off), prev.data.length);
    t.put(prev.key, grown);
  }
  for (; off < csums.length; off += max) {
    t.put(csumKey(bytenr + BigInt((off / cs) * ss)), csums.slice(off, off + max));
  }
}

/**
 * Whether any csum item covers part of [bytenr, bytenr+len): one search (items never overlap, so only
 * the last one starting below the end can reach into the range) — new data goes where none are, and
 * deleteCsums costs two searches and a walk.
 */
function csumsIn(fs: FilesystemModel, bytenr: bigint, len: bigint): boolean {
  const it = fs.tree(BTRFS_CSUM_TREE_OBJECTID).last(csumKey(bytenr + len - 1n), csumKey(0n));
  if (!it) return false;
  const cs = BigInt(csumAlgo(fs.sb.csum_type).size);
  return it.key.offset + (BigInt(it.data.length) / cs) * BigInt(fs.sectorsize) > bytenr;
}

/** Remove checksums of [bytenr, bytenr+len), splitting items that straddle the range. */
export function deleteCsums(fs: FilesystemModel, bytenr: bigint, len: bigint): void {
  const ss = BigInt(fs.sectorsize);
  const cs = BigInt(csumAlgo(fs.sb.csum_type).size);
  const end = bytenr + len;
  const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
  const before = t.last(csumKey(bytenr), csumKey(0n));
  const hits = t.range(csumKey(bytenr), csumKey(end - 1n));
  if (before && (hits.length === 0 || hits[0]!.key.offset !== before.key.offset)) hits.unshift(before);
  for (const it of hits) {
    const s = it.key.offset;
    const e = s + (BigInt(it.data.length) / cs) * ss;
    if (e <= bytenr || s >= end) continue;
    t.delete(it.key);
    if (s < bytenr) t.put(csumKey(s), it.data.slice(0, Number(((bytenr - s) / ss) * cs)));
    if (e > end) t.put(csumKey(end), it.data.slice(Number(((end - s) / ss) * cs)));
  }
}

/**
 * Merge the csum items of the data checksummed since the last commit (fs.csumTouched) with each other
 * and with the items right before and after them, into runs of at most maxCsumsPerItem checksums, as the
 * kernel keeps them (it extends the previous item when it can). Only those windows are read and
 * rewritten: the cost follows the data written, not the size of the csum tree.
 */
export function normalizeCsumTree(fs: FilesystemModel): void {
  for (const [s, e] of fs.csumTouched) normalizeCsumWindow(fs, s, e);
  fs.csumTouched = new RangeSet();
}

function normalizeCsumWindow(fs: FilesystemModel, start: bigint, end: bigint): void {
  const ss = BigInt(fs.sectorsize);
  const cs = csumAlgo(fs.sb.csum_type).size;
  const max = maxCsumsPerItem(fs.nodesize, cs) * cs;
  const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
  const span = (bytes: number): bigint => BigInt(bytes / cs) * ss;
  const prev = start > 0n ? t.last(csumKey(start - 1n), csumKey(0n)) : undefined;
  const from = prev && prev.key.offset + span(prev.data.length) === start ? prev.key : csumKey(start);
  // taken whole before any change: the window is as big as the change, and the tree is not walked while it changes
  const items = [...t.entries(from, csumKey(end))];
  let i = 0;
  while (i < items.length) {
    // one run of contiguous items
    let j = i + 1;
    let runEnd = items[i]!.key.offset + span(items[i]!.data.length);
    while (j < items.length && items[j]!.key.offset === runEnd) runEnd += span(items[j++]!.data.length);
    const run = items.slice(i, j);
    i = j;
    if (run.every((it, k) => it.data.length === max || k === run.length - 1)) continue; // cut right already
    const bytes = new Uint8Array(run.reduce((n, it) => n + it.data.length, 0));
    let o = 0;
    for (const it of run) {
      t.delete(it.key);
      bytes.set(it.data, o);
      o += it.data.length;
    }
    let at = run[0]!.key.offset;
    for (let off = 0; off < bytes.length; off += max) {
      const piece = bytes.slice(off, off + max);
      t.put(csumKey(at), piece);
      at += span(piece.length);
    }
  }
}
