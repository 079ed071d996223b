import { ImageError } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_ITEM_KEY, BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_CHUNK_ITEM_KEY,
  BTRFS_CHUNK_TREE_OBJECTID, BTRFS_CSUM_TREE_OBJECTID, BTRFS_DEV_ITEMS_OBJECTID, BTRFS_DEV_ITEM_KEY, BTRFS_DEV_TREE_OBJECTID,
  BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FIRST_CHUNK_TREE_OBJECTID, BTRFS_FREE_SPACE_EXTENT_KEY, BTRFS_FREE_SPACE_INFO_KEY,
  BTRFS_FS_TREE_OBJECTID, BTRFS_HEADER_FLAG_WRITTEN, BTRFS_ROOT_TREE_OBJECTID,
} from '../structs/constants.js';
import { encodeDevItem } from '../structs/chunk-items.js';
import { type BtrfsRootBackup, type BtrfsSuperBlock, encodeSysChunkArray } from '../structs/superblock.js';
import { decodeBlockGroupItem, encodeBlockGroupItem, encodeFreeSpaceInfo } from '../structs/tree-items.js';
import type { Item } from './item-map.js';
import type { FilesystemModel } from './model.js';
import { RangeSet } from './ranges.js';
import type { TreeBlockRef } from './tree-state.js';

/**
 * What a commit derives from the other trees and from where their blocks landed: the DEV_ITEM, each
 * tree's ROOT_ITEM, block group usage, the free space tree's items and the superblock.
 */
export interface RootPtr {
  bytenr: bigint;
  level: number;
  generation: bigint;
}

export function updateDevItem(fs: FilesystemModel): void {
  fs.sb.dev_item.bytes_used = fs.devUsed.total();
  fs.tree(BTRFS_CHUNK_TREE_OBJECTID).put(
    { objectid: BTRFS_DEV_ITEMS_OBJECTID, type: BTRFS_DEV_ITEM_KEY, offset: fs.sb.dev_item.devid },
    encodeDevItem(fs.sb.dev_item),
  );
}

/** Point each ROOT_ITEM at its tree's new root (fields patched in place to keep everything else). */
export function patchRootItems(fs: FilesystemModel, roots: Map<bigint, RootPtr & { blocks: TreeBlockRef[] }>): void {
  const rootTree = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  for (const [rootid, r] of roots) {
    if (rootid === BTRFS_ROOT_TREE_OBJECTID || rootid === BTRFS_CHUNK_TREE_OBJECTID) continue;
    const key = fs.rootItemKey(rootid);
    if (!key) throw new ImageError('IMAGE_NO_ROOT_ITEM', `tree ${rootid} has no ROOT_ITEM in the root tree`);
    const data = rootTree.get(key)!.slice();
    const dv = new DataView(data.buffer);
    dv.setBigUint64(160, r.generation, true);
    dv.setBigUint64(176, r.bytenr, true);
    // (a copy-on-write tree opened and left untouched has no block list: its bytes_used stays)
    if (r.blocks.length) dv.setBigUint64(192, BigInt(r.blocks.length * fs.nodesize), true);
    dv.setUint8(238, r.level);
    if (data.length >= 247) dv.setBigUint64(239, r.generation, true);
    rootTree.put(key, data);
  }
}

export function updateBlockGroups(fs: FilesystemModel, dataUsed: RangeSet, metaUsed: RangeSet): void {
  const extent = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
  for (const c of fs.chunks.all()) {
    const key = { objectid: c.logical, type: BTRFS_BLOCK_GROUP_ITEM_KEY, offset: c.length };
    const old = extent.get(key);
    if (!old) throw new ImageError('IMAGE_NO_BLOCK_GROUP', `chunk at ${c.logical} has no block group item`);
    const used = (c.type & BTRFS_BLOCK_GROUP_DATA ? dataUsed : metaUsed).slice(c.logical, c.logical + c.length).total();
    extent.put(key, encodeBlockGroupItem({ ...decodeBlockGroupItem(old), used }));
  }
}

/** Free space tree = each block group minus its extents, as FREE_SPACE_INFO + FREE_SPACE_EXTENT items. */
export function freeSpaceItems(fs: FilesystemModel, dataUsed: RangeSet, metaUsed: RangeSet): Item[] {
  const out: Item[] = [];
  for (const c of fs.chunks.all()) {
    const free = RangeSet.of([[c.logical, c.logical + c.length]]);
    for (const [s, e] of (c.type & BTRFS_BLOCK_GROUP_DATA ? dataUsed : metaUsed).slice(c.logical, c.logical + c.length)) free.remove(s, e);
    out.push({ key: { objectid: c.logical, type: BTRFS_FREE_SPACE_INFO_KEY, offset: c.length }, data: encodeFreeSpaceInfo({ extent_count: free.count, flags: 0 }) });
    for (const [s, e] of free) out.push({ key: { objectid: s, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: e - s }, data: new Uint8Array(0) });
  }
  return out;
}

/** The next superblock: `rootOf` gives each tree's new (or kept) root; a backup slot gets the same roots. */
export function buildSuperblock(fs: FilesystemModel, rootOf: (id: bigint) => RootPtr, gen: bigint): BtrfsSuperBlock {
  let bytesUsed = 0n;
  const extentTree = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
  for (const c of fs.chunks.all()) {
    const bg = extentTree.get({ objectid: c.logical, type: BTRFS_BLOCK_GROUP_ITEM_KEY, offset: c.length });
    if (bg) bytesUsed += decodeBlockGroupItem(bg).used;
  }
  const sys = fs.chunks.all().filter((c) => c.type & BTRFS_BLOCK_GROUP_SYSTEM).map((c) => ({
    key: { objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID, type: BTRFS_CHUNK_ITEM_KEY, offset: c.logical },
    chunk: {
      length: c.length, owner: BTRFS_EXTENT_TREE_OBJECTID, stripe_len: 65536n, type: c.type, io_align: 65536, io_width: 65536,
      sector_size: fs.sectorsize, sub_stripes: 1, stripes: c.stripes,
    },
  }));
  const { array, size } = encodeSysChunkArray(sys);
  const root = rootOf(BTRFS_ROOT_TREE_OBJECTID);
  const chunk = rootOf(BTRFS_CHUNK_TREE_OBJECTID);
  const extent = rootOf(BTRFS_EXTENT_TREE_OBJECTID);
  const fsRoot = rootOf(BTRFS_FS_TREE_OBJECTID);
  const dev = rootOf(BTRFS_DEV_TREE_OBJECTID);
  const csum = rootOf(BTRFS_CSUM_TREE_OBJECTID);
  const backup: BtrfsRootBackup = {
    tree_root: root.bytenr, tree_root_gen: root.generation, chunk_root: chunk.bytenr, chunk_root_gen: chunk.generation,
    extent_root: extent.bytenr, extent_root_gen: extent.generation, fs_root: fsRoot.bytenr, fs_root_gen: fsRoot.generation,
    dev_root: dev.bytenr, dev_root_gen: dev.generation, csum_root: csum.bytenr, csum_root_gen: csum.generation,
    total_bytes: fs.sb.total_bytes, bytes_used: bytesUsed, num_devices: 1n,
    tree_root_level: root.level, chunk_root_level: chunk.level, extent_root_level: extent.level,
    fs_root_level: fsRoot.level, dev_root_level: dev.level, csum_root_level: csum.level,
  };
  // the kernel fills backup slots round-robin, after the newest one
  const backups = fs.sb.super_roots.slice();
  let newest = -1;
  backups.forEach((b, i) => {
    if (b.tree_root_gen > 0n && (newest < 0 || b.tree_root_gen > backups[newest]!.tree_root_gen)) newest = i;
  });
  backups[(newest + 1) % 4] = backup;
  return {
    ...fs.sb,
    flags: fs.sb.flags | BTRFS_HEADER_FLAG_WRITTEN,
    generation: gen,
    root: root.bytenr,
    root_level: root.level,
    chunk_root: chunk.bytenr,
    chunk_root_level: chunk.level,
    chunk_root_generation: chunk.generation,
    bytes_used: bytesUsed,
    dev_item: { ...fs.sb.dev_item },
    sys_chunk_array: array,
    sys_chunk_array_size: size,
    super_roots: backups,
  };
}
