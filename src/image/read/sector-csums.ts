import {
  BTRFS_EXTENT_CSUM_KEY, BTRFS_EXTENT_CSUM_OBJECTID, BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE, type BtrfsKey, compareDiskKeys,
  type LeafItem, type TreeBlock,
} from '../structs.js';
import type { ImageReader } from './image.js';
import { compareLeafKey, diskKey, leafItem, leafKey, leafSlotLE } from './leaf-keys.js';
import type { TreeRoot } from './tree.js';

/**
 * The stored checksums of a range of data sectors, looked up in the csum tree (EXTENT_CSUM items, as the
 * kernel's btrfs_lookup_bio_sums finds them for a read). Apart from reading the data they check
 * (file-data.ts): a send looks up the sums of each of its ~10k extents, from the csum leaf the last lookup
 * ended in where it can, and that bookkeeping (the leaf kept per csum tree, keys compared in disk bytes,
 * items read in place) is this module's.
 */

/** Stored checksums of the sectors of a range, back to back (`size` bytes each), and which sectors have one. */
export interface SectorCsums {
  sums: Uint8Array;
  have: Uint8Array;
}

/**
 * The csum leaf the last sectorCsums search of each csum tree ended in (TreeReader.leafLE), its bound as
 * disk bytes (diskKey). Consecutive extents' checksums are mostly in one leaf (a 16 KiB leaf holds the sums
 * of ~16 MiB of data): a send looked up each extent's sums from the root twice (the item before, then the
 * items up to its end).
 */
const lastCsumLeaf = new WeakMap<TreeRoot, { leaf: TreeBlock; bound: DataView | undefined }>();

/** The bounds of a csum leaf search as disk bytes (diskKey), filled and used between two awaits: a send makes one search per extent. */
const fromKey = new DataView(new ArrayBuffer(17));
const toKey = new DataView(new ArrayBuffer(17));

const csumKey = (offset: bigint): BtrfsKey => ({ objectid: BTRFS_EXTENT_CSUM_OBJECTID, type: BTRFS_EXTENT_CSUM_KEY, offset });

/** diskKey(csumKey(offset), into) without the key object: once or twice per extent sent. */
function csumDiskKey(offset: bigint, into: DataView): DataView {
  into.setBigUint64(0, BTRFS_EXTENT_CSUM_OBJECTID, true);
  into.setUint8(8, BTRFS_EXTENT_CSUM_KEY);
  into.setBigUint64(9, offset, true);
  return into;
}

/**
 * Whether `at` holds every csum item a search from `from` to `to` (csumDiskKey of its first and last
 * byte) meets: the item keyed <= from (the leaf's first key is not after it) and every item keyed up to
 * `to` (the next leaf starts after it).
 */
function leafCovers(at: { leaf: TreeBlock; bound: DataView | undefined }, from: DataView, to: DataView): boolean {
  return at.leaf.header.nritems > 0 && compareLeafKey(at.leaf, 0, from) <= 0 && (at.bound === undefined || compareDiskKeys(to, 0, at.bound, 0) < 0);
}

/**
 * The sectors of [lo, hi) (safe integers) that csum item `i` of `leaf` covers, copied into `out`: the
 * arithmetic of sectorCsums' `put` in numbers, read in place (a send's ~10k extents made an item object
 * and five BigInt operations each). False where the item's offset is not a safe integer: `put` does it.
 */
function putInPlace(leaf: TreeBlock, i: number, lo: number, hi: number, ss: number, cs: number, out: SectorCsums): boolean {
  const v = leaf.view;
  const p = BTRFS_HEADER_SIZE + i * BTRFS_ITEM_SIZE;
  const offHi = v.getUint32(p + 13, true);
  if (offHi >= 0x200000) return false;
  const off = offHi * 0x100000000 + v.getUint32(p + 9, true);
  const start = BTRFS_HEADER_SIZE + v.getUint32(p + 17, true);
  const size = v.getUint32(p + 21, true);
  const itemEnd = off + Math.floor(size / cs) * ss;
  const a = off > lo ? off : lo;
  const b = itemEnd < hi ? itemEnd : hi;
  if (a >= b) return true;
  const skip = Math.floor((a - off) / ss);
  const at = Math.floor((a - lo) / ss);
  const k = Math.ceil((b - a) / ss);
  out.sums.set(leaf.raw.subarray(start + Math.min(skip * cs, size), start + Math.min((skip + k) * cs, size)), at * cs);
  out.have.fill(1, at, at + k);
  return true;
}

/** Stored checksum of each sector of [logical, logical+len) from the csum tree; `have[i]` 0 where none is. */
export async function sectorCsums(img: ImageReader, csumRoot: TreeRoot | undefined, logical: bigint, len: number, cs: number): Promise<SectorCsums> {
  const ss = img.sectorsize;
  const n = Math.ceil(len / ss);
  const out: SectorCsums = { sums: new Uint8Array(n * cs), have: new Uint8Array(n) };
  if (!csumRoot) return out;
  const end = logical + BigInt(len);
  const put = (it: LeafItem): void => {
    // the item's sectors that fall inside the range, copied in one piece
    const count = Math.floor(it.data.length / cs);
    const itemEnd = it.key.offset + BigInt(count * ss);
    const a = it.key.offset > logical ? it.key.offset : logical;
    const b = itemEnd < end ? itemEnd : end;
    if (a >= b) return;
    const skip = Number((a - it.key.offset) / BigInt(ss));
    const at = Number((a - logical) / BigInt(ss));
    const k = Math.ceil(Number(b - a) / ss);
    out.sums.set(it.data.subarray(skip * cs, (skip + k) * cs), at * cs);
    out.have.fill(1, at, at + k);
  };
  let at = lastCsumLeaf.get(csumRoot);
  if (!at || !leafCovers(at, csumDiskKey(logical, fromKey), csumDiskKey(end - 1n, toKey))) {
    const found = await img.trees.leafLE(csumRoot, csumKey(logical));
    at = found && { leaf: found.leaf, bound: found.bound && diskKey(found.bound) };
    if (at) lastCsumLeaf.set(csumRoot, at);
  }
  const from = csumDiskKey(logical, fromKey);
  const to = csumDiskKey(end - 1n, toKey);
  if (at && leafCovers(at, from, to)) {
    // the same items as the search below: from the last one keyed <= logical (when it is a csum item) to the last one before end
    const leaf = at.leaf;
    let i = leafSlotLE(leaf, from);
    const k = i >= 0 ? leafKey(leaf, i) : undefined;
    if (!k || k.objectid !== BTRFS_EXTENT_CSUM_OBJECTID || k.type !== BTRFS_EXTENT_CSUM_KEY) i++;
    const safe = end <= BigInt(Number.MAX_SAFE_INTEGER);
    const [lo, hi] = [Number(logical), Number(end)];
    for (; i < leaf.header.nritems && compareLeafKey(leaf, i, to) <= 0; i++) {
      if (!safe || !putInPlace(leaf, i, lo, hi, ss, cs, out)) put(leafItem(leaf, i));
    }
    return out;
  }
  // The item covering `logical` may start before it: begin at the last item keyed <= logical.
  const first = await img.trees.lookupLE(csumRoot, csumKey(logical));
  const startKey = first && first.key.objectid === BTRFS_EXTENT_CSUM_OBJECTID && first.key.type === BTRFS_EXTENT_CSUM_KEY ? first.key.offset : logical;
  for await (const it of img.trees.iterate(csumRoot, csumKey(startKey), csumKey(end - 1n))) put(it);
  return out;
}
