import {
  BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_CHUNK_ITEM_KEY,
  BTRFS_CHUNK_TREE_OBJECTID, BTRFS_CSUM_TREE_OBJECTID, BTRFS_DEV_ITEMS_OBJECTID, BTRFS_DEV_ITEM_KEY, BTRFS_DEV_TREE_OBJECTID,
  BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FIRST_CHUNK_TREE_OBJECTID,
  BTRFS_FS_TREE_OBJECTID, BTRFS_HEADER_FLAG_WRITTEN, BTRFS_ROOT_TREE_OBJECTID,
} from '../structs/constants.js';
import { encodeDevItem } from '../structs/chunk-items.js';
import { ROOT_ITEM_OFF } from '../structs/tree-items.js';
import { type BtrfsRootBackup, type BtrfsSuperBlock, encodeSysChunkArray } from '../structs/superblock.js';
import type { FilesystemModel } from './model.js';
import { invalidatedCacheGeneration } from './space-cache-v1.js';

/**
 * What a commit derives from the other trees: the DEV_ITEM, each tree's ROOT_ITEM and the superblock.
 */
export interface RootPtr {
  bytenr: bigint;
  level: number;
  generation: bigint;
}

/** The DEV_ITEM follows the device's size and usage; returns whether it changed. */
export function updateDevItem(fs: FilesystemModel): boolean {
  fs.sb.dev_item.bytes_used = fs.devUsed.total();
  const key = { objectid: BTRFS_DEV_ITEMS_OBJECTID, type: BTRFS_DEV_ITEM_KEY, offset: fs.sb.dev_item.devid };
  const data = encodeDevItem(fs.sb.dev_item);
  const chunkTree = fs.tree(BTRFS_CHUNK_TREE_OBJECTID);
  const old = chunkTree.get(key);
  if (old && Buffer.compare(old, data) === 0) return false;
  chunkTree.put(key, data);
  return true;
}

/**
 * Point the ROOT_ITEM of every tree whose root moved at its new root (fields patched in place, the
 * rest kept); `patched` remembers what this commit wrote already. Returns whether any changed.
 */
export function patchRootItems(fs: FilesystemModel, patched: Map<bigint, RootPtr>): boolean {
  const rootTree = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  let changed = false;
  // the trees touched since the last commit, and any other whose block count moved (a tree's blocks change
  // only through its root, so none should be)
  const trees = new Set(fs.touched);
  for (const id of fs.store.usedDeltaOwners()) {
    const t = fs.trees.get(id);
    if (t) trees.add(t);
  }
  for (const t of trees) {
    const rootid = t.rootid;
    if (rootid === BTRFS_ROOT_TREE_OBJECTID || rootid === BTRFS_CHUNK_TREE_OBJECTID) continue; // in the superblock
    const e = t.engine!;
    const grown = fs.store.peekUsedDelta(rootid);
    if (!e.rootChanged && grown === 0) continue;
    const r = e.root;
    const last = patched.get(rootid);
    if (grown === 0 && last && last.bytenr === r.bytenr && last.level === r.level && last.generation === r.generation) continue;
    const { key, data } = fs.rootItemCopy(rootid);
    const dv = new DataView(data.buffer);
    dv.setBigUint64(ROOT_ITEM_OFF.generation, r.generation, true);
    dv.setBigUint64(ROOT_ITEM_OFF.bytenr, r.bytenr, true);
    // bytes_used follows the blocks the tree gained and lost (BlockStore.usedDelta), as the kernel keeps it
    const used = dv.getBigUint64(ROOT_ITEM_OFF.bytes_used, true) + BigInt(fs.store.takeUsedDelta(rootid) * fs.nodesize);
    dv.setBigUint64(ROOT_ITEM_OFF.bytes_used, BigInt.asUintN(64, used), true);
    dv.setUint8(ROOT_ITEM_OFF.level, r.level);
    if (data.length >= ROOT_ITEM_OFF.generation_v2 + 8) dv.setBigUint64(ROOT_ITEM_OFF.generation_v2, r.generation, true);
    rootTree.put(key, data);
    patched.set(rootid, { ...r });
    changed = true;
  }
  return changed;
}

/** The next superblock: `rootOf` gives each tree's new (or kept) root; a backup slot gets the same roots. */
export function buildSuperblock(fs: FilesystemModel, rootOf: (id: bigint) => RootPtr, gen: bigint): BtrfsSuperBlock {
  const bytesUsed = fs.sb.bytes_used + fs.bytesUsedDelta;
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
    cache_generation: invalidatedCacheGeneration(fs.sb, gen),
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
