import { ImageError } from '../../errors.js';
import type { BlockDevice } from '../device.js';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_ITEM_KEY, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_CHUNK_ITEM_KEY,
  BTRFS_CHUNK_TREE_OBJECTID, BTRFS_DEV_EXTENT_KEY, BTRFS_DEV_TREE_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID,
  BTRFS_FIRST_CHUNK_TREE_OBJECTID,
} from '../structs/constants.js';
import { encodeChunk, encodeDevExtent } from '../structs/chunk-items.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { encodeBlockGroupItem } from '../structs/tree-items.js';
import { blockGroupTreeId } from './block-group-tree.js';
import { chunkLength } from './chunk-size.js';
import { BTRFS_STRIPE_LEN, type ChunkInfo, type ChunkMap } from './chunks.js';
import { chunkTypeFor } from './mixed-groups.js';
import { RangeSet } from './ranges.js';
import type { TreeHandle } from './tree-state.js';

/**
 * Chunk allocation on the single device: a chunk's stripes placed in free device space (growing the
 * image file when allowed), usable at once, its items inserted by the commit. What it needs
 * of the filesystem model is ChunkOwner, so the model can use it without the two importing each other.
 */
export const SZ_1M = 1n << 20n;

export interface ChunkOwner {
  readonly device: BlockDevice;
  readonly sb: BtrfsSuperBlock;
  readonly chunks: ChunkMap;
  readonly sectorsize: number;
  readonly metadataProfile: bigint;
  readonly dataProfile: bigint;
  readonly growable: boolean;
  readonly maxSize: bigint | undefined;
  readonly devUsed: RangeSet;
  readonly space: { newBlockGroup(c: ChunkInfo): void };
  pendingChunks: ChunkInfo[];
  readonly chunkTreeUuid: Uint8Array;
  tree(rootid: bigint): TreeHandle;
}

/**
 * Add a chunk of `type` (DATA, METADATA or SYSTEM) with at least `minBytes` usable, with its dev
 * extents, chunk item and block group item, growing the device if allowed. Sized as the kernel sizes
 * chunks, or as mkfs.btrfs does with `mkfs` (chunk-size.ts).
 */
export function addChunk(o: ChunkOwner, asked: bigint, minBytes: bigint, mkfs = false): ChunkInfo {
  // mixed block groups: a chunk for data or tree blocks is for both
  const type = chunkTypeFor(o.sb, asked);
  const profile = type === BTRFS_BLOCK_GROUP_DATA ? o.dataProfile : o.metadataProfile;
  const copies = profile === BTRFS_BLOCK_GROUP_DUP ? 2 : 1;
  // +2 stripe windows so a superblock copy inside the chunk cannot eat the needed room
  const need = roundUp(minBytes + 2n * BTRFS_STRIPE_LEN, SZ_1M);
  let length = chunkLength(type, copies, o.sb.dev_item.total_bytes, mkfs);
  if (length < need) length = need;
  // on a fixed-size device settle for what still fits, as long as it covers the need
  const free = devFree(o);
  const fits = (len: bigint): bigint[] | undefined => placeStripes(free, len, copies);
  let stripes = fits(length);
  if (!stripes && !o.growable) {
    let biggest = 0n;
    for (const [s, e] of free) if (e - s > biggest) biggest = e - s;
    const shrunk = ((copies === 2 ? biggest / 2n : biggest) / SZ_1M) * SZ_1M;
    if (shrunk >= need) {
      length = shrunk;
      stripes = fits(length);
    }
  }
  if (!stripes) {
    const newTotal = roundUp(devEnd(o) + BigInt(copies) * length, SZ_1M);
    growTo(o, newTotal, type, length);
    stripes = fits(length) ?? placeStripes(devFree(o), length, copies);
    if (!stripes) throw new ImageError('IMAGE_FULL', `cannot place a ${length}-byte chunk after growing the device`);
  }
  const chunk: ChunkInfo = {
    logical: o.chunks.nextLogical(SZ_1M),
    length,
    type: type | profile,
    stripes: stripes.map((offset) => ({ devid: o.sb.dev_item.devid, offset, dev_uuid: o.sb.dev_item.uuid })),
  };
  registerChunk(o, chunk);
  return chunk;
}

/**
 * A new chunk is usable at once (chunk map, device space, free space); its items in the chunk, dev and
 * extent trees are inserted by the commit (insertChunkItems), as the kernel creates pending block
 * groups at the end of a transaction: the chunk may be added while one of those trees is being changed.
 */
export function registerChunk(o: ChunkOwner, chunk: ChunkInfo): void {
  o.chunks.add(chunk);
  for (const s of chunk.stripes) o.devUsed.add(s.offset, s.offset + chunk.length);
  o.space.newBlockGroup(chunk);
  o.pendingChunks.push(chunk);
}

/** The chunk item, dev extents and block group item of a chunk added in this transaction. */
export function insertChunkItems(o: ChunkOwner, chunk: ChunkInfo): void {
  o.tree(BTRFS_CHUNK_TREE_OBJECTID).put(
    { objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID, type: BTRFS_CHUNK_ITEM_KEY, offset: chunk.logical },
    encodeChunk({
      length: chunk.length, owner: BTRFS_EXTENT_TREE_OBJECTID, stripe_len: BTRFS_STRIPE_LEN, type: chunk.type,
      io_align: Number(BTRFS_STRIPE_LEN), io_width: Number(BTRFS_STRIPE_LEN), sector_size: o.sectorsize,
      sub_stripes: 1, stripes: chunk.stripes,
    }),
  );
  for (const s of chunk.stripes) {
    o.tree(BTRFS_DEV_TREE_OBJECTID).put(
      { objectid: s.devid, type: BTRFS_DEV_EXTENT_KEY, offset: s.offset },
      encodeDevExtent({
        chunk_tree: BTRFS_CHUNK_TREE_OBJECTID, chunk_objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID,
        chunk_offset: chunk.logical, length: chunk.length, chunk_tree_uuid: o.chunkTreeUuid,
      }),
    );
  }
  o.tree(blockGroupTreeId(o.sb)).put(
    { objectid: chunk.logical, type: BTRFS_BLOCK_GROUP_ITEM_KEY, offset: chunk.length },
    encodeBlockGroupItem({ used: 0n, chunk_objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID, flags: chunk.type }),
  );
}

function devFree(o: ChunkOwner): RangeSet {
  const free = RangeSet.of([[SZ_1M, o.sb.dev_item.total_bytes]]);
  for (const [s, e] of o.devUsed) free.remove(s, e);
  return free;
}

function devEnd(o: ChunkOwner): bigint {
  let end = SZ_1M;
  for (const [, e] of o.devUsed) if (e > end) end = e;
  return end;
}

function growTo(o: ChunkOwner, newTotal: bigint, type: bigint, length: bigint): void {
  const limit = o.maxSize;
  if (!o.growable || (limit !== undefined && newTotal > limit)) {
    const kind = type & BTRFS_BLOCK_GROUP_DATA ? 'data' : type & BTRFS_BLOCK_GROUP_SYSTEM ? 'system' : 'metadata';
    throw new ImageError(
      'IMAGE_FULL',
      `image is full: a new ${length}-byte ${kind} chunk needs the device to grow to ${newTotal} bytes` +
        (limit !== undefined ? ` (limit ${limit})` : ' and it is not growable'),
    );
  }
  setDeviceSize(o, newTotal);
}

function setDeviceSize(o: ChunkOwner, newTotal: bigint): void {
  if (newTotal > o.device.size()) o.device.grow(newTotal);
  o.sb.dev_item.total_bytes = newTotal;
  o.sb.total_bytes = newTotal;
}

/**
 * Unallocated room for a kernel `btrfs balance --full-balance`, kept when a growable device took new chunks
 * in this transaction (a device grown only by what its chunks needed ends full, and balance then fails
 * with ENOSPC; so does the kernel's own filesystem when it is that full). What a full balance needs, from
 * the kernel's rules (block-group.c btrfs_inc_block_group_ro, space-info.c calc_available_free_space):
 * - each data or metadata block group is emptied into a chunk the kernel allocates at its own size (10%
 *   of the device, at most 1 GiB of data / 256 MiB of metadata), so up to one data chunk and one metadata
 *   chunk (both copies when DUP) of room end up allocated but part-filled;
 * - the SYSTEM block group comes last, and no chunk may be allocated for it: it is made read-only only if
 *   metadata can overcommit, which needs the unallocated space, halved for DUP, to exceed one data chunk.
 * Checked with the kernel on the bench streams (docs/image-format.md, Growth and limits). The file grows
 * sparsely (no disk cost), only up to `maxSize`; devices that are not growable, or that took no chunk in
 * this transaction, keep their size.
 */
export function keepRelocationRoom(o: ChunkOwner): void {
  if (!o.growable || o.pendingChunks.length === 0) return;
  const end = devEnd(o);
  const metaCopies = o.metadataProfile === BTRFS_BLOCK_GROUP_DUP ? 2n : 1n;
  // the room depends on the device's size, which the room changes: settle (two rounds suffice; four bound it)
  let total = o.sb.dev_item.total_bytes;
  for (let i = 0; i < 4; i++) {
    const data = chunkLength(BTRFS_BLOCK_GROUP_DATA, 1, total, false);
    const meta = chunkLength(BTRFS_BLOCK_GROUP_METADATA, Number(metaCopies), total, false) * metaCopies;
    const want = roundUp(end + data + meta + metaCopies * data + SZ_1M, SZ_1M);
    if (want <= total) break;
    total = want;
  }
  if (o.maxSize !== undefined && total > o.maxSize) total = (o.maxSize / SZ_1M) * SZ_1M;
  if (total > o.sb.dev_item.total_bytes) setDeviceSize(o, total);
}

function roundUp(v: bigint, a: bigint): bigint {
  return ((v + a - 1n) / a) * a;
}

/** Physical start of each of `copies` stripes of `len` bytes in free device space, 1 MiB aligned. */
function placeStripes(free: RangeSet, len: bigint, copies: number): bigint[] | undefined {
  const f = free.clone();
  const out: bigint[] = [];
  for (let i = 0; i < copies; i++) {
    const at = f.findFree(len, SZ_1M);
    if (at === undefined) return undefined;
    f.remove(at, at + len);
    out.push(at);
  }
  return out;
}
