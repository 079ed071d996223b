import { cannotModify, ImageError } from '../../errors.js';
import {
  U64_MAX, BTRFS_EXTENT_ITEM_KEY, BTRFS_FREE_SPACE_OBJECTID, BTRFS_INODE_ITEM_KEY, BTRFS_METADATA_ITEM_KEY, BTRFS_ROOT_TREE_OBJECTID,
} from '../structs/constants.js';
import { decodeDiskKey } from '../structs/fs-items.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { hasFreeSpaceTree } from './features.js';
import type { FilesystemModel } from './model.js';
import { RangeSet } from './ranges.js';
import type { TreeHandle } from './tree-state.js';

/**
 * Images without a free space tree: the free space of each block group may be cached in the v1 space
 * cache (a FREE_SPACE header item in the root tree per block group, pointing at a NODATASUM,
 * preallocated inode of the root tree whose data holds the entries). The writer does not rewrite those
 * entries: it invalidates the whole cache the way the kernel recognises, by committing with a
 * generation that differs from the superblock's cache_generation. Every commit leaves cache_generation
 * as it was and the generation only grows, so the two differ from the first commit on:
 * - the kernel (block-group.c, btrfs_read_block_groups) then marks every block group's cache
 *   BTRFS_DC_CLEAR: it neither loads a cache entry nor trusts one, and rewrites them at its next commit;
 * - btrfs check (check_space_cache) says "cache and super generation don't match, space cache will be
 *   invalidated" and verifies no entry; it is not an error.
 * That alone is not enough: the kernel rewrites only the caches of block groups it changes, then
 * stores its own generation as cache_generation, and a cache this writer made stale but the kernel did
 * not rewrite would look valid again. So each cache inode also gets generation 0, the mark the kernel
 * itself sets before it rewrites a cache (free-space-cache.c, cache_save_setup): the kernel skips such
 * a cache ("the free space cache file is invalid, skip it") and btrfs check does not verify it.
 * The cache inodes, their file extents and the data extents they hold are left as they are (the extent
 * tree keeps their references, so no allocation lands on them); the kernel truncates and refills them.
 * cache_generation 0 (v1 never used) and U64_MAX (mkfs.btrfs: nothing cached yet) stay too.
 */
export function checkSpaceCacheV1(sb: BtrfsSuperBlock): void {
  if (hasFreeSpaceTree(sb)) return;
  const cg = sb.cache_generation;
  // a cache generation at or past the filesystem's would equal the next commit's generation and make
  // stale entries look valid: only a damaged superblock has it
  if (cg !== 0n && cg !== U64_MAX && cg > sb.generation) {
    throw cannotModify('IMAGE_BAD_SUPERBLOCK', `its space cache generation ${cg} is newer than the filesystem's ${sb.generation}`, { command: 'btrfs_super_block' });
  }
}

/** The cache_generation the next superblock carries: the old one, which never equals a new generation. */
export function invalidatedCacheGeneration(sb: BtrfsSuperBlock, gen: bigint): bigint {
  if (hasFreeSpaceTree(sb)) return sb.cache_generation;
  if (sb.cache_generation === gen) throw new ImageError('IMAGE_INTERNAL', `space cache generation ${gen} would match the commit's`);
  return sb.cache_generation;
}

/**
 * Mark every v1 cache inode invalid (generation 0) in the root tree. Called when the image is opened:
 * the change reaches the disk with the first commit, or never if the receive fails before it. The cost
 * is one header item and one inode item per block group with a cache.
 */
export function invalidateSpaceCacheInodes(fs: FilesystemModel): void {
  if (hasFreeSpaceTree(fs.sb)) return;
  const root = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  const headers = root.range({ objectid: BTRFS_FREE_SPACE_OBJECTID, type: 0, offset: 0n }, { objectid: BTRFS_FREE_SPACE_OBJECTID, type: 0, offset: U64_MAX });
  for (const h of headers) {
    // btrfs_free_space_header: the cache inode's key (17 bytes), generation, num_entries, num_bitmaps
    if (h.key.type !== 0 || h.data.length < 41) {
      throw cannotModify('IMAGE_BAD_SPACE_CACHE', `free space cache header of block group ${h.key.offset} has ${h.data.length} bytes`, { offset: h.key.offset });
    }
    const loc = decodeDiskKey(h.data);
    const key = { objectid: loc.objectid, type: BTRFS_INODE_ITEM_KEY, offset: 0n };
    const inode = root.get(key);
    // a header without its inode: the kernel and check skip it (nothing to load)
    if (!inode) continue;
    const data = inode.slice();
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (dv.getBigUint64(0, true) === 0n) continue;
    dv.setBigUint64(0, 0n, true);
    root.put(key, data);
  }
}

/**
 * The free ranges of a block group without a free space tree, as the kernel's caching thread finds them
 * when it has no valid cache (block-group.c, load_extent_tree_free): the block group minus every extent
 * item (data: its length; tree block: METADATA_ITEM, one node) that starts in it. The extent tree may
 * already miss extents this transaction freed; the caller keeps those pinned.
 */
export function extentTreeFreeRanges(extent: TreeHandle, bg: { logical: bigint; length: bigint }, nodesize: number): RangeSet {
  const end = bg.logical + bg.length;
  const free = RangeSet.of([[bg.logical, end]]);
  for (const it of extent.entries({ objectid: bg.logical, type: 0, offset: 0n }, { objectid: end - 1n, type: 255, offset: U64_MAX })) {
    const len = it.key.type === BTRFS_EXTENT_ITEM_KEY ? it.key.offset : it.key.type === BTRFS_METADATA_ITEM_KEY ? BigInt(nodesize) : 0n;
    if (len === 0n) continue;
    if (it.key.objectid + len > end) {
      throw new ImageError('IMAGE_BAD_EXTENT', `extent at ${it.key.objectid} (${len} bytes) runs past its block group ending at ${end}`, { offset: it.key.objectid });
    }
    free.remove(it.key.objectid, it.key.objectid + len);
  }
  return free;
}
