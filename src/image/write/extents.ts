import { ImageError } from '../../errors.js';
import { deleteCsums } from './data-csums.js';
import { crc32cRaw } from '../../util/crc32c.js';
import {
  U64_MAX, BTRFS_EXTENT_DATA_REF_KEY,
  BTRFS_EXTENT_FLAG_DATA, BTRFS_EXTENT_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_SHARED_DATA_REF_KEY,
} from '../structs/constants.js';
import {
  type BtrfsExtentDataRef, decodeExtentDataRef, decodeExtentItem, decodeSharedDataRef, encodeExtentDataRef, encodeExtentItem,
  encodeSharedDataRef,
} from '../structs/tree-items.js';
import type { FilesystemModel } from './model.js';
import type { Key } from './items.js';

/**
 * Data extent bookkeeping in the extent tree (EXTENT_ITEM + data back references); their checksums are
 * data-csums.ts's.
 *
 * Back references are kept in one canonical form: a single (root, inode, offset) owner is stored inline
 * in the EXTENT_ITEM (what the kernel writes for an unshared extent); several owners are stored as keyed
 * EXTENT_DATA_REF items, which the kernel and btrfs check accept for any extent and which avoids
 * the inline-ref ordering rules entirely.
 */

const u64Scratch = new Uint8Array(8);
const u64View = new DataView(u64Scratch.buffer);
const le = (v: bigint): Uint8Array => {
  u64View.setBigUint64(0, v, true);
  return u64Scratch;
};

/** hash_extent_data_ref: key offset of a keyed EXTENT_DATA_REF. Note the shift is 31, as in the kernel. */
export function hashExtentDataRef(root: bigint, objectid: bigint, offset: bigint): bigint {
  // one scratch buffer: each value is hashed before the next is written into it
  const high = BigInt(crc32cRaw(le(root), 0xffffffff));
  const mid = crc32cRaw(le(objectid), 0xffffffff);
  const low = BigInt(crc32cRaw(le(offset), mid));
  return ((high << 31n) ^ low) & U64_MAX;
}

/**
 * An extent with at least this many references, all keyed (an EXTENT_ITEM of just its 24-byte head), has
 * one reference changed in place: its keyed item and the head's count — as the kernel's delayed refs
 * change one item. Fewer are rewritten whole in the canonical form below (a few items either way). Whole
 * rewrites cost every reference again at each change: in a chain of daily snapshots an extent gains a
 * reference from each day whose copy of its leaf changes: day 60 of a chain of 3,000 files took 1.40 s
 * against day 1's 0.48 (1.00 s now; the kernel 0.11 and 0.06 s, docs/performance.md).
 */
const KEYED_AT = 8;
const EXTENT_HEAD_SIZE = 24;

/** The EXTENT_ITEM of the data extent at `bytenr` (key and bytes), undefined when there is none. */
function extentHead(fs: FilesystemModel, bytenr: bigint): { key: Key; data: Uint8Array } | undefined {
  return fs.tree(BTRFS_EXTENT_TREE_OBJECTID).first(
    { objectid: bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: 0n },
    { objectid: bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: U64_MAX },
  );
}

/**
 * The extent's reference count after a change by `count`, when one reference of the extent whose
 * EXTENT_ITEM is `head` can change in place (keyed form, KEYED_AT or more before and after); else undefined.
 */
function keyedAfter(head: { data: Uint8Array }, count: number): bigint | undefined {
  if (head.data.length !== EXTENT_HEAD_SIZE) return undefined;
  const refs = new DataView(head.data.buffer, head.data.byteOffset, EXTENT_HEAD_SIZE).getBigUint64(0, true);
  const after = refs + BigInt(count);
  return refs >= KEYED_AT && after >= KEYED_AT ? after : undefined;
}

/**
 * Change one keyed reference (`key`: an EXTENT_DATA_REF or SHARED_DATA_REF of the extent) by `count`, the
 * head's count becoming `after` (keyedAfter); false (nothing changed) when a reference to drop is not
 * there. `make` gives the item for a reference not there yet, `bump` the changed one (null: its count
 * reached 0) or throws when it is not the reference asked for.
 */
function changeKeyedRef(
  fs: FilesystemModel, head: { key: Key; data: Uint8Array }, after: bigint, key: Key, count: number,
  make: () => Uint8Array, bump: (cur: Uint8Array) => Uint8Array | null,
): boolean {
  const t = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
  const cur = t.get(key);
  if (!cur) {
    if (count < 0) return false; // (the whole rewrite names what is missing)
    t.put(key, make());
  } else {
    const next = bump(cur);
    if (next) t.put(key, next);
    else t.delete(key);
  }
  const data = head.data.slice();
  new DataView(data.buffer).setBigUint64(0, after, true);
  t.put(head.key, data);
  return true;
}

/** changeKeyedRef of EXTENT_DATA_REF (root, objectid, offset), for an extent whose EXTENT_ITEM is `head`. */
function changeKeyedDataRef(fs: FilesystemModel, head: { key: Key; data: Uint8Array }, root: bigint, objectid: bigint, offset: bigint, count: number): boolean {
  const after = keyedAfter(head, count);
  if (after === undefined) return false;
  const bytenr = head.key.objectid;
  const key = { objectid: bytenr, type: BTRFS_EXTENT_DATA_REF_KEY, offset: hashExtentDataRef(root, objectid, offset) };
  return changeKeyedRef(fs, head, after, key, count, () => encodeExtentDataRef({ root, objectid, offset, count }), (cur) => {
    const r = decodeExtentDataRef(cur);
    if (r.root !== root || r.objectid !== objectid || r.offset !== offset) {
      throw new ImageError('IMAGE_REF_HASH_COLLISION', `extent data ref hash collision on extent ${bytenr}`);
    }
    if (r.count + count < 0) {
      throw new ImageError('IMAGE_NO_REF', `data extent ${bytenr} has no reference (${root}, ${objectid}, ${offset}) x${-count} to drop`, { offset: bytenr });
    }
    r.count += count;
    return r.count > 0 ? encodeExtentDataRef(r) : null;
  });
}

/** changeKeyedRef of the SHARED_DATA_REF by the FULL_BACKREF leaf at `parent`, for an extent whose EXTENT_ITEM is `head`. */
function changeKeyedSharedRef(fs: FilesystemModel, head: { key: Key; data: Uint8Array }, parent: bigint, count: number): boolean {
  const after = keyedAfter(head, count);
  if (after === undefined) return false;
  const bytenr = head.key.objectid;
  const key = { objectid: bytenr, type: BTRFS_SHARED_DATA_REF_KEY, offset: parent };
  return changeKeyedRef(fs, head, after, key, count, () => encodeSharedDataRef({ count }), (cur) => {
    const n = decodeSharedDataRef(cur).count + count;
    if (n < 0) throw new ImageError('IMAGE_NO_REF', `data extent ${bytenr} has no shared reference by block ${parent} to drop`, { offset: bytenr });
    return n > 0 ? encodeSharedDataRef({ count: n }) : null;
  });
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
  return extentHead(fs, bytenr)?.key;
}

/** Whether a data extent starts at `bytenr` (without reading its references). */
export function hasDataExtent(fs: FilesystemModel, bytenr: bigint): boolean {
  return extentKey(fs, bytenr) !== undefined;
}

/** The data extent starting at `bytenr` with all its references, or undefined. */
export function getDataExtent(fs: FilesystemModel, bytenr: bigint): DataExtentInfo | undefined {
  const head = extentHead(fs, bytenr);
  return head && dataExtentOf(fs, head);
}

/** getDataExtent of the extent whose EXTENT_ITEM is `head`. */
function dataExtentOf(fs: FilesystemModel, head: { key: Key; data: Uint8Array }): DataExtentInfo {
  const t = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
  const { key } = head;
  const bytenr = key.objectid;
  const ei = decodeExtentItem(head.data, BTRFS_EXTENT_ITEM_KEY);
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
  const head = extentHead(fs, bytenr);
  if (head && changeKeyedSharedRef(fs, head, parent, count)) return;
  const x = head && dataExtentOf(fs, head);
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
  const head = extentHead(fs, bytenr);
  if (head && changeKeyedDataRef(fs, head, root, ino, offset, count)) return;
  const x = head && dataExtentOf(fs, head);
  if (!x) throw new ImageError('IMAGE_NO_EXTENT', `no data extent at ${bytenr}`, { offset: bytenr });
  const r = x.refs.find((e) => e.root === root && e.objectid === ino && e.offset === offset);
  if (r) r.count += count;
  else x.refs.push({ root, objectid: ino, offset, count });
  storeDataExtent(fs, x);
}

/** Drop references; returns true when the extent lost its last one and was freed. */
export function dropDataRef(fs: FilesystemModel, bytenr: bigint, root: bigint, ino: bigint, offset: bigint, count = 1): boolean {
  // (KEYED_AT references or more are left: never the last one)
  const head = extentHead(fs, bytenr);
  if (head && changeKeyedDataRef(fs, head, root, ino, offset, -count)) return false;
  const x = head && dataExtentOf(fs, head);
  const r = x?.refs.find((e) => e.root === root && e.objectid === ino && e.offset === offset);
  if (!x || !r || r.count < count) {
    throw new ImageError('IMAGE_NO_REF', `data extent ${bytenr} has no reference (${root}, ${ino}, ${offset}) x${count} to drop`, { offset: bytenr });
  }
  r.count -= count;
  storeDataExtent(fs, x);
  return !x.refs.some((e) => e.count > 0) && !(x.shared ?? []).some((e) => e.count > 0);
}

// checksums live in data-csums.ts (storeDataExtent drops a freed extent's); re-exported for existing importers
export { addDataCsums, deleteCsums, maxCsumsPerItem, normalizeCsumTree, putDataCsums } from './data-csums.js';
