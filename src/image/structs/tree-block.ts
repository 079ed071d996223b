import { ImageError } from '../../errors.js';
import { LeReader, LeWriter } from './bytes.js';
import { BTRFS_MAX_LEVEL } from './constants.js';
import { type BtrfsKey, diskKeyAt, writeDiskKey } from './fs-items.js';
import { setBlockCsum } from './csum.js';
import { nativeAddon } from '../../util/native-addon.js';

/** The native addon's pass over a block's item layout and key order, where it has one (native/leaf-scan.c). */
const treeBlockOk = nativeAddon?.treeBlockOk;

/**
 * Tree blocks: a 101-byte header, then either items (leaf: item headers grow up from the header, their
 * data grows down from the end of the block, item.offset counted from the end of the header) or key
 * pointers (node).
 */

export interface BtrfsHeader {
  csum: Uint8Array;
  fsid: Uint8Array;
  bytenr: bigint;
  /** Low bits: BTRFS_HEADER_FLAG_*; top byte: backref revision (MIXED_BACKREF_REV = 1). */
  flags: bigint;
  chunk_tree_uuid: Uint8Array;
  generation: bigint;
  owner: bigint;
  nritems: number;
  level: number;
}
export const BTRFS_HEADER_SIZE = 101;
export const BTRFS_ITEM_SIZE = 25;
export const BTRFS_KEY_PTR_SIZE = 33;

export function decodeHeader(b: Uint8Array): BtrfsHeader {
  const r = new LeReader(b, 0, 'btrfs_header');
  return {
    csum: r.bytes(32), fsid: r.bytes(16), bytenr: r.u64(), flags: r.u64(), chunk_tree_uuid: r.bytes(16),
    generation: r.u64(), owner: r.u64(), nritems: r.u32(), level: r.u8(),
  };
}
export function writeHeader(b: Uint8Array, h: BtrfsHeader): void {
  const w = new LeWriter(b);
  w.bytes(h.csum, 32); w.bytes(h.fsid, 16); w.u64(h.bytenr); w.u64(h.flags); w.bytes(h.chunk_tree_uuid, 16);
  w.u64(h.generation); w.u64(h.owner); w.u32(h.nritems); w.u8(h.level);
}

export interface LeafItem {
  key: BtrfsKey;
  /** Item payload (a view into the block buffer). */
  data: Uint8Array;
}
export interface KeyPtr {
  key: BtrfsKey;
  blockptr: bigint;
  generation: bigint;
}
export interface TreeBlock {
  header: BtrfsHeader;
  /**
   * Leaf items in key order (level 0 only). Made on first use: the readers that search, walk or compare a
   * leaf read its keys in place (leaf-keys.ts), so most leaves never get an object per item.
   */
  readonly items: LeafItem[];
  /** Child pointers in key order (level > 0 only). */
  ptrs: KeyPtr[];
  /** The block's bytes (nodesize long), which `items` are views into. */
  raw: Uint8Array;
  /** A DataView over `raw`, for reading keys in place. */
  view: DataView;
  /** The first item's or pointer's key (undefined when there is none): what the parent's pointer promised. */
  readonly firstKey: BtrfsKey | undefined;
}

/**
 * A parsed block. Its items are made when `items` is first read: a send or ls reads a few hundred leaves
 * of ~140 items each and keeps them in the block cache, and an object per item (the key, its two BigInts,
 * the data view: ~200 bytes) is what V8's scavenges copied — most of an incremental send's GC
 * (docs/performance.md, eleventh session, incr15).
 */
class ParsedBlock implements TreeBlock {
  private made: LeafItem[] | undefined;
  private first: BtrfsKey | null = null;

  constructor(readonly header: BtrfsHeader, readonly ptrs: KeyPtr[], readonly raw: Uint8Array, readonly view: DataView) {}

  get items(): LeafItem[] {
    return (this.made ??= this.header.level === 0 ? leafItems(this.raw, this.view, this.header.nritems) : []);
  }

  // kept once made: every cache hit checks it against the parent's pointer
  get firstKey(): BtrfsKey | undefined {
    if (this.header.nritems === 0) return undefined;
    if (this.header.level > 0) return this.ptrs[0]!.key;
    return (this.first ??= diskKeyAt(this.view, BTRFS_HEADER_SIZE));
  }
}

/** Every item of a leaf whose structure parseTreeBlock checked. */
function leafItems(b: Uint8Array, dv: DataView, n: number): LeafItem[] {
  const items: LeafItem[] = new Array(n);
  for (let i = 0, p = BTRFS_HEADER_SIZE; i < n; i++, p += BTRFS_ITEM_SIZE) {
    const offset = BTRFS_HEADER_SIZE + dv.getUint32(p + 17, true);
    items[i] = { key: diskKeyAt(dv, p), data: b.subarray(offset, offset + dv.getUint32(p + 21, true)) };
  }
  return items;
}

/**
 * Compares the disk keys at byte offsets `p` of `a` and `q` of `b` (objectid, type, offset: little-endian
 * u64, u8, u64), read as 32-bit halves: no BigInt is made.
 */
export function compareDiskKeys(a: DataView, p: number, b: DataView, q: number): number {
  let x = a.getUint32(p + 4, true), y = b.getUint32(q + 4, true);
  if (x !== y) return x < y ? -1 : 1;
  x = a.getUint32(p, true); y = b.getUint32(q, true);
  if (x !== y) return x < y ? -1 : 1;
  x = a.getUint8(p + 8); y = b.getUint8(q + 8);
  if (x !== y) return x < y ? -1 : 1;
  x = a.getUint32(p + 13, true); y = b.getUint32(q + 13, true);
  if (x !== y) return x < y ? -1 : 1;
  x = a.getUint32(p + 9, true); y = b.getUint32(q + 9, true);
  return x === y ? 0 : x < y ? -1 : 1;
}

/**
 * Parses a tree block's structure. Checks only what the bytes themselves can prove (sizes, item bounds,
 * key order); the caller checks csum, bytenr, level and owner against what it expected.
 */
export function parseTreeBlock(b: Uint8Array, nodesize = b.length): TreeBlock {
  const bad = (msg: string): never => {
    throw new ImageError('IMAGE_BAD_TREE_BLOCK', `tree block: ${msg}`, { command: 'btrfs_header' });
  };
  if (b.length < nodesize || nodesize < BTRFS_HEADER_SIZE) bad(`buffer of ${b.length} bytes, nodesize ${nodesize}`);
  const header = decodeHeader(b);
  if (header.level >= BTRFS_MAX_LEVEL) bad(`level ${header.level} >= ${BTRFS_MAX_LEVEL}`);
  const ptrs: KeyPtr[] = [];
  // Fields read straight from one DataView: every offset below lies inside the block once nritems is
  // known to fit (the item and pointer arrays are checked against nodesize first), so no read needs the
  // per-field bounds check of LeReader — a send or ls parses every block it opens, most of them cold code.
  const dv = new DataView(b.buffer, b.byteOffset, nodesize);
  const n = header.nritems;
  // the loops below, in C where the addon is: they only need to run for their messages when it says no
  let checked = false;
  if (header.level === 0) {
    if (n > (nodesize - BTRFS_HEADER_SIZE) / BTRFS_ITEM_SIZE) bad(`nritems ${n} cannot fit`);
    checked = treeBlockOk?.(b, nodesize, 0, n) === true;
    let prevEnd = nodesize - BTRFS_HEADER_SIZE;
    for (let i = 0, p = BTRFS_HEADER_SIZE; i < n && !checked; i++, p += BTRFS_ITEM_SIZE) {
      const offset = dv.getUint32(p + 17, true), size = dv.getUint32(p + 21, true);
      // Data of item i must sit right below data of item i-1 and above the item headers.
      if (offset + size !== prevEnd) bad(`item ${i} data [${offset}, +${size}) does not end at ${prevEnd}`);
      if (BTRFS_HEADER_SIZE + offset < BTRFS_HEADER_SIZE + BTRFS_ITEM_SIZE * n) bad(`item ${i} data overlaps item headers`);
      prevEnd = offset;
    }
  } else {
    if (n === 0) bad(`node at level ${header.level} has no pointers`);
    if (n > (nodesize - BTRFS_HEADER_SIZE) / BTRFS_KEY_PTR_SIZE) bad(`nritems ${n} cannot fit`);
    checked = treeBlockOk?.(b, nodesize, header.level, n) === true;
    for (let i = 0, p = BTRFS_HEADER_SIZE; i < n; i++, p += BTRFS_KEY_PTR_SIZE) {
      ptrs.push({ key: diskKeyAt(dv, p), blockptr: dv.getBigUint64(p + 17, true), generation: dv.getBigUint64(p + 25, true) });
    }
  }
  // keys in order, compared where they lie (a leaf's item headers or a node's key pointers)
  const step = header.level === 0 ? BTRFS_ITEM_SIZE : BTRFS_KEY_PTR_SIZE;
  for (let i = 1, p = BTRFS_HEADER_SIZE + step; i < n && !checked; i++, p += step) {
    if (compareDiskKeys(dv, p - step, dv, p) >= 0) bad(`keys out of order at slot ${i}`);
  }
  return new ParsedBlock(header, ptrs, b.subarray(0, nodesize), dv);
}

/** Free bytes in a leaf holding these items (each costs its 25-byte item header plus its data). */
export function leafFreeSpace(nodesize: number, items: { data: Uint8Array }[]): number {
  return nodesize - BTRFS_HEADER_SIZE - items.reduce((n, x) => n + BTRFS_ITEM_SIZE + x.data.length, 0);
}
export function maxNodePtrs(nodesize: number): number {
  return Math.floor((nodesize - BTRFS_HEADER_SIZE) / BTRFS_KEY_PTR_SIZE);
}

type HeaderFields = Omit<BtrfsHeader, 'csum' | 'nritems' | 'level'>;

/** Builds a leaf checksummed with `csumType` (the superblock's csum_type); items must already be sorted by key. */
export function buildLeaf(h: HeaderFields, items: LeafItem[], nodesize: number, csumType: number): Uint8Array {
  if (leafFreeSpace(nodesize, items) < 0) {
    throw new ImageError('IMAGE_LEAF_OVERFLOW', `${items.length} items do not fit in a ${nodesize}-byte leaf`);
  }
  const b = new Uint8Array(nodesize);
  writeHeader(b, { ...h, csum: new Uint8Array(32), nritems: items.length, level: 0 });
  const w = new LeWriter(b, BTRFS_HEADER_SIZE);
  let dataEnd = nodesize - BTRFS_HEADER_SIZE;
  for (const it of items) {
    dataEnd -= it.data.length;
    writeDiskKey(w, it.key);
    w.u32(dataEnd);
    w.u32(it.data.length);
    b.set(it.data, BTRFS_HEADER_SIZE + dataEnd);
  }
  setBlockCsum(b, csumType);
  return b;
}

/** Builds a node at `level` (>= 1) checksummed with `csumType`; ptrs must be sorted by key. */
export function buildNode(h: HeaderFields, level: number, ptrs: KeyPtr[], nodesize: number, csumType: number): Uint8Array {
  if (level < 1 || level >= BTRFS_MAX_LEVEL) throw new ImageError('IMAGE_BAD_LEVEL', `node level ${level}`);
  if (ptrs.length === 0 || ptrs.length > maxNodePtrs(nodesize)) {
    throw new ImageError('IMAGE_NODE_OVERFLOW', `${ptrs.length} key pointers for a ${nodesize}-byte node`);
  }
  const b = new Uint8Array(nodesize);
  writeHeader(b, { ...h, csum: new Uint8Array(32), nritems: ptrs.length, level });
  const w = new LeWriter(b, BTRFS_HEADER_SIZE);
  for (const p of ptrs) {
    writeDiskKey(w, p.key); w.u64(p.blockptr); w.u64(p.generation);
  }
  setBlockCsum(b, csumType);
  return b;
}
