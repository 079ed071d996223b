import { ImageError } from '../../errors.js';
import { BTRFS_HEADER_FLAG_WRITTEN, BTRFS_MAX_LEVEL } from '../structs/constants.js';
import { type BtrfsKey, diskKeyAt, formatKey } from '../structs/fs-items.js';
import { formatUuid } from '../structs/bytes.js';
import { setBlockCsum, verifyBlockCsum } from '../structs/csum.js';
import { BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE, BTRFS_KEY_PTR_SIZE, maxNodePtrs } from '../structs/tree-block.js';
import type { Expect } from '../read/block-check.js';
import { Block } from './block.js';

/**
 * The engine's tree blocks from and to their on-disk bytes, straight into and out of Block's arrays:
 * the same checks and bytes as parseTreeBlock/checkTreeCopy and buildLeaf/buildNode (read/, structs/),
 * without their intermediate objects. Blocks are decoded and encoded a few hundred times in a short
 * run (an incremental's commit touches ~100 extent tree leaves of a large parent), so these loops run
 * before V8 has optimised them or soon after: small monomorphic functions that compile quickly matter
 * as much as the work they do.
 */

// btrfs_header: csum[32], fsid[16], bytenr, flags, chunk_tree_uuid[16], generation, owner, nritems (u32), level (u8)
const FSID = 32;
const BYTENR = 48;
const FLAGS = 56;
const CHUNK_TREE_UUID = 64;
const GENERATION = 80;
const OWNER = 88;
const NRITEMS = 96;
const LEVEL = 100;

/**
 * One copy of a tree block checked as the kernel checks it on read (checksum, structure, then what
 * its parent promised: checkTreeCopy's checks, in its order and words) and decoded: the Block, or why not.
 */
export function decodeBlock(
  raw: Uint8Array, nodesize: number, bytenr: bigint, exp: Expect, fsid: Uint8Array, csumType: number,
  ownerOk: (treeId: bigint, owner: bigint) => boolean = (t, o) => t === o,
): Block | string {
  if (raw.length < nodesize || nodesize < BTRFS_HEADER_SIZE) return `tree block: buffer of ${raw.length} bytes, nodesize ${nodesize}`;
  if (!verifyBlockCsum(raw, csumType)) return 'checksum mismatch';
  const dv = new DataView(raw.buffer, raw.byteOffset, nodesize);
  const level = raw[LEVEL]!;
  const nritems = dv.getUint32(NRITEMS, true);
  if (level >= BTRFS_MAX_LEVEL) return `tree block: level ${level} >= ${BTRFS_MAX_LEVEL}`;
  const b = new Block(dv.getBigUint64(BYTENR, true), level, dv.getBigUint64(GENERATION, true), dv.getBigUint64(OWNER, true), dv.getBigUint64(FLAGS, true));
  const why = level === 0 ? decodeItems(raw, dv, nodesize, nritems, b) : decodePtrs(dv, nodesize, nritems, b);
  if (why) return `tree block: ${why}`;
  if (b.bytenr !== bytenr) return `header bytenr is ${b.bytenr}`;
  for (let i = 0; i < 16; i++) if (raw[FSID + i] !== fsid[i]) return `fsid ${formatUuid(raw.slice(FSID, FSID + 16))} is not this filesystem's`;
  if (level !== exp.level) return `level ${level}, expected ${exp.level}`;
  if (b.generation !== exp.generation) return `generation ${b.generation}, parent expects ${exp.generation}`;
  if (!ownerOk(exp.owner, b.owner)) return `owner ${b.owner} cannot belong to tree ${exp.owner}`;
  const first = b.keys[0];
  if (exp.firstKey && first && compare(first, exp.firstKey) !== 0) return `first key ${formatKey(first)}, parent says ${formatKey(exp.firstKey)}`;
  return b;
}

function compare(a: BtrfsKey, c: BtrfsKey): number {
  if (a.objectid !== c.objectid) return a.objectid < c.objectid ? -1 : 1;
  if (a.type !== c.type) return a.type - c.type;
  return a.offset < c.offset ? -1 : a.offset > c.offset ? 1 : 0;
}

function decodeItems(raw: Uint8Array, dv: DataView, nodesize: number, nritems: number, b: Block): string | undefined {
  if (nritems > (nodesize - BTRFS_HEADER_SIZE) / BTRFS_ITEM_SIZE) return `nritems ${nritems} cannot fit`;
  const headersEnd = BTRFS_ITEM_SIZE * nritems;
  let prevEnd = nodesize - BTRFS_HEADER_SIZE;
  let prev: BtrfsKey | undefined;
  let used = 0;
  for (let i = 0, p = BTRFS_HEADER_SIZE; i < nritems; i++, p += BTRFS_ITEM_SIZE) {
    const key = diskKeyAt(dv, p);
    const offset = dv.getUint32(p + 17, true);
    const size = dv.getUint32(p + 21, true);
    // data of item i sits right below data of item i-1 and above the item headers
    if (offset + size !== prevEnd) return `item ${i} data [${offset}, +${size}) does not end at ${prevEnd}`;
    if (offset < headersEnd) return `item ${i} data overlaps item headers`;
    if (prev && compare(prev, key) >= 0) return `keys out of order at slot ${i}`;
    prevEnd = offset;
    prev = key;
    b.keys.push(key);
    b.data.push(raw.subarray(BTRFS_HEADER_SIZE + offset, BTRFS_HEADER_SIZE + offset + size));
    used += BTRFS_ITEM_SIZE + size;
  }
  b.used = used;
  return undefined;
}

function decodePtrs(dv: DataView, nodesize: number, nritems: number, b: Block): string | undefined {
  if (nritems === 0) return `node at level ${b.level} has no pointers`;
  if (nritems > (nodesize - BTRFS_HEADER_SIZE) / BTRFS_KEY_PTR_SIZE) return `nritems ${nritems} cannot fit`;
  let prev: BtrfsKey | undefined;
  for (let i = 0, p = BTRFS_HEADER_SIZE; i < nritems; i++, p += BTRFS_KEY_PTR_SIZE) {
    const key = diskKeyAt(dv, p);
    if (prev && compare(prev, key) >= 0) return `keys out of order at slot ${i}`;
    prev = key;
    b.keys.push(key);
    b.ptrs.push(dv.getBigUint64(p + 17, true));
    b.ptrGens.push(dv.getBigUint64(p + 25, true));
  }
  return undefined;
}

/** The block's bytes, checksummed: what buildLeaf / buildNode make of the same header and items. */
export function encodeBlock(b: Block, nodesize: number, fsid: Uint8Array, chunkTreeUuid: Uint8Array, csumType: number): Uint8Array {
  const n = b.keys.length;
  if (b.level === 0) {
    if (b.used > nodesize - BTRFS_HEADER_SIZE) throw new ImageError('IMAGE_LEAF_OVERFLOW', `${n} items do not fit in a ${nodesize}-byte leaf`);
  } else if (b.level >= BTRFS_MAX_LEVEL) {
    throw new ImageError('IMAGE_BAD_LEVEL', `node level ${b.level}`);
  } else if (n === 0 || n > maxNodePtrs(nodesize)) {
    throw new ImageError('IMAGE_NODE_OVERFLOW', `${n} key pointers for a ${nodesize}-byte node`);
  }
  const out = new Uint8Array(nodesize);
  const dv = new DataView(out.buffer);
  out.set(fsid.subarray(0, 16), FSID);
  dv.setBigUint64(BYTENR, b.bytenr, true);
  dv.setBigUint64(FLAGS, b.flags | BTRFS_HEADER_FLAG_WRITTEN, true);
  out.set(chunkTreeUuid.subarray(0, 16), CHUNK_TREE_UUID);
  dv.setBigUint64(GENERATION, b.generation, true);
  dv.setBigUint64(OWNER, b.owner, true);
  dv.setUint32(NRITEMS, n, true);
  out[LEVEL] = b.level;
  if (b.level === 0) encodeItems(out, dv, nodesize, b);
  else encodePtrs(dv, b);
  setBlockCsum(out, csumType);
  return out;
}

function writeKey(dv: DataView, p: number, k: BtrfsKey): void {
  dv.setBigUint64(p, k.objectid, true);
  dv.setUint8(p + 8, k.type);
  dv.setBigUint64(p + 9, k.offset, true);
}

function encodeItems(out: Uint8Array, dv: DataView, nodesize: number, b: Block): void {
  let dataEnd = nodesize - BTRFS_HEADER_SIZE;
  const n = b.keys.length;
  for (let i = 0, p = BTRFS_HEADER_SIZE; i < n; i++, p += BTRFS_ITEM_SIZE) {
    const data = b.data[i]!;
    dataEnd -= data.length;
    writeKey(dv, p, b.keys[i]!);
    dv.setUint32(p + 17, dataEnd, true);
    dv.setUint32(p + 21, data.length, true);
    out.set(data, BTRFS_HEADER_SIZE + dataEnd);
  }
}

function encodePtrs(dv: DataView, b: Block): void {
  const n = b.keys.length;
  for (let i = 0, p = BTRFS_HEADER_SIZE; i < n; i++, p += BTRFS_KEY_PTR_SIZE) {
    writeKey(dv, p, b.keys[i]!);
    dv.setBigUint64(p + 17, b.ptrs[i]!, true);
    dv.setBigUint64(p + 25, b.ptrGens[i]!, true);
  }
}
