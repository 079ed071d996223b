import { ImageError } from '../../errors.js';
import type { BlockDevice } from '../device.js';
import { ImageReader } from '../read/image.js';
import { fromBlockDevice } from '../read/source.js';
import { metadataFsid } from '../read/superblock.js';
import type { TreeRoot } from '../read/tree.js';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM,
  BTRFS_CHUNK_ITEM_KEY, BTRFS_CHUNK_TREE_OBJECTID, BTRFS_DEV_EXTENT_KEY, BTRFS_DEV_TREE_OBJECTID,
  BTRFS_EXTENT_DATA_KEY, BTRFS_EXTENT_FLAG_TREE_BLOCK, BTRFS_EXTENT_ITEM_KEY,
  BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FILE_EXTENT_INLINE,
  BTRFS_FREE_SPACE_TREE_OBJECTID, BTRFS_METADATA_ITEM_KEY, BTRFS_QUOTA_TREE_OBJECTID, BTRFS_ROOT_ITEM_KEY,
  BTRFS_ROOT_TREE_OBJECTID, BTRFS_SHARED_BLOCK_REF_KEY, BTRFS_SHARED_DATA_REF_KEY, BTRFS_TREE_BLOCK_REF_KEY,
  BTRFS_BLOCK_FLAG_FULL_BACKREF,
  BTRFS_TREE_RELOC_OBJECTID,
} from '../structs/constants.js';
import { decodeChunk, decodeDevExtent } from '../structs/chunk-items.js';
import { decodeFileExtentItem } from '../structs/fs-items.js';
import { decodeExtentItem, decodeRootItem } from '../structs/tree-items.js';
import { ChunkMap } from './chunks.js';
import { storeDataExtent, type DataExtentInfo } from './extents.js';
import { checkWritableFeatures } from './features.js';
import { Filesystem, type GrowthOptions, isSubvolumeTree, type TreeBlockRef, TreeState } from './filesystem.js';
import { loadCommittedTree } from './lazy-tree.js';
import { checkWritable } from './open-checks.js';
import { BTree } from '../engine/ctree.js';
import { ItemMap } from './item-map.js';
import { PageStore } from './page-store.js';
import { initRootItems } from './subvol.js';

const U64_MAX = (1n << 64n) - 1n;
const ALL = { from: { objectid: 0n, type: 0, offset: 0n }, to: { objectid: U64_MAX, type: 255, offset: U64_MAX } };

/**
 * Load an existing single-device image (made by mkfs.btrfs, the kernel, or this writer) into the
 * writer's model. The filesystem-wide trees are read (checksums, levels, generations, owners and keys
 * verified) and marked dirty, so derived content (extent tree tree-block items, block group usage, free
 * space tree) is rebuilt from scratch rather than trusted. Subvolume trees that share no block with
 * another tree stay on disk: read when first used, rewritten only when changed. When the image shares
 * blocks (kernel snapshots), every subvolume tree is read and rewritten unshared instead.
 */
export async function openFilesystem(device: BlockDevice, growth: GrowthOptions = {}): Promise<Filesystem> {
  const img = await ImageReader.open(fromBlockDevice(device));
  const sb = img.superblock;
  const refuse = (code: string, why: string): never => {
    throw new ImageError(code, `cannot modify this image: ${why}`);
  };
  if (sb.log_root !== 0n) refuse('IMAGE_HAS_LOG', 'it has a tree log to replay (mount it once with the kernel first)');
  checkWritableFeatures(sb);
  await checkWritable(img);

  const chunkRoot: TreeRoot = { id: BTRFS_CHUNK_TREE_OBJECTID, bytenr: sb.chunk_root, level: sb.chunk_root_level, generation: sb.chunk_root_generation };
  const chunkBlock = await img.trees.readBlock(sb.chunk_root, { level: sb.chunk_root_level, generation: sb.chunk_root_generation, owner: BTRFS_CHUNK_TREE_OBJECTID });
  const pageStore = growth.pageStore ?? new PageStore();
  const loadTree = async (root: TreeRoot): Promise<ItemMap> => {
    const m = new ItemMap(pageStore);
    for await (const it of img.trees.iterate(root, ALL.from, ALL.to)) m.put(it.key, it.data.slice());
    return m;
  };

  const chunkItems = await loadTree(chunkRoot);
  const chunks = new ChunkMap();
  let metaProfile = 0n;
  let dataProfile = 0n;
  for (const it of chunkItems.entries()) {
    if (it.key.type !== BTRFS_CHUNK_ITEM_KEY) continue;
    const c = decodeChunk(it.data);
    chunks.add({ logical: it.key.offset, length: c.length, type: c.type, stripes: c.stripes });
    if (c.type & (BTRFS_BLOCK_GROUP_METADATA | BTRFS_BLOCK_GROUP_SYSTEM)) metaProfile |= c.type & BTRFS_BLOCK_GROUP_DUP;
    else if (c.type & BTRFS_BLOCK_GROUP_DATA) dataProfile |= c.type & BTRFS_BLOCK_GROUP_DUP;
  }

  const fs = new Filesystem(device, { ...sb, dev_item: { ...sb.dev_item }, super_roots: sb.super_roots.slice() }, metaProfile, { ...growth, pageStore });
  fs.dataProfile = dataProfile;
  fs.chunkTreeUuid = chunkBlock.header.chunk_tree_uuid;
  fs.headerFsid = metadataFsid(sb);
  for (const c of chunks.all()) fs.chunks.add(c);
  fs.trees.set(BTRFS_CHUNK_TREE_OBJECTID, new TreeState(BTRFS_CHUNK_TREE_OBJECTID, chunkItems, true));

  const rootTree: TreeRoot = { id: BTRFS_ROOT_TREE_OBJECTID, bytenr: sb.root, level: sb.root_level, generation: sb.generation };
  const rootItems = loadCommittedTree(fs, BTRFS_ROOT_TREE_OBJECTID, rootTree);
  fs.trees.set(BTRFS_ROOT_TREE_OBJECTID, new TreeState(BTRFS_ROOT_TREE_OBJECTID, rootItems, true));
  const subvolRoots: TreeRoot[] = [];
  for (const it of rootItems.range({ objectid: 0n, type: 0, offset: 0n }, ALL.to)) {
    if (it.key.type !== BTRFS_ROOT_ITEM_KEY) continue;
    const id = it.key.objectid;
    if (id === BTRFS_QUOTA_TREE_OBJECTID) refuse('IMAGE_QUOTA', 'quotas are enabled (qgroup accounting is not maintained)');
    if (id === BTRFS_TREE_RELOC_OBJECTID) refuse('IMAGE_RELOC', 'a balance/relocation is in progress');
    const ri = decodeRootItem(it.data);
    const root = { id, bytenr: ri.bytenr, level: ri.level, generation: ri.generation };
    // subvolume trees wait for the extent tree: unless blocks are shared, they stay on disk until used
    if (isSubvolumeTree(id)) subvolRoots.push(root);
    else fs.trees.set(id, new TreeState(id, id === BTRFS_FREE_SPACE_TREE_OBJECTID ? new ItemMap(pageStore) : loadCommittedTree(fs, id, root), true));
  }
  for (const id of [BTRFS_EXTENT_TREE_OBJECTID, BTRFS_DEV_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID]) {
    if (!fs.trees.has(id)) refuse('IMAGE_NO_TREE', `tree ${id} is missing`);
  }

  // Tree-block extent items describe the blocks just read: they are the committed state (never
  // overwritten by the next commit) and are regenerated by it, so they leave the model here.
  const extent = fs.trees.get(BTRFS_EXTENT_TREE_OBJECTID)!.items;
  // Anything shared between trees (tree blocks with several owners, back references by block address)
  // makes the references of data extents partly implicit; without it the extent tree's counts are exact.
  let shared = false;
  const blocksOf = new Map<bigint, TreeBlockRef[]>();
  let block: TreeBlockRef | undefined; // the tree block whose keyed back references follow
  const owned = (root: bigint, b: TreeBlockRef): void => {
    let list = blocksOf.get(root);
    if (!list) blocksOf.set(root, (list = []));
    list.push(b);
  };
  for (const it of extent.entries()) {
    const t = it.key.type;
    const ei = t === BTRFS_METADATA_ITEM_KEY || t === BTRFS_EXTENT_ITEM_KEY ? decodeExtentItem(it.data, t) : undefined;
    if (ei && (t === BTRFS_METADATA_ITEM_KEY || (ei.flags & BTRFS_EXTENT_FLAG_TREE_BLOCK) !== 0n)) {
      if (ei.refs > 1n || (ei.flags & BTRFS_BLOCK_FLAG_FULL_BACKREF) !== 0n) shared = true;
      const level = t === BTRFS_METADATA_ITEM_KEY ? Number(it.key.offset) : ei.tree_block_info?.level ?? 0;
      block = { bytenr: it.key.objectid, level, generation: ei.generation };
      for (const r of ei.inline_refs) {
        if (r.type === BTRFS_TREE_BLOCK_REF_KEY) owned(r.root, block);
        else shared = true;
      }
      fs.committedBusy.add(it.key.objectid, it.key.objectid + BigInt(sb.nodesize));
      extent.delete(it.key);
    } else if (t === BTRFS_TREE_BLOCK_REF_KEY || t === BTRFS_SHARED_BLOCK_REF_KEY) {
      if (t === BTRFS_SHARED_BLOCK_REF_KEY || block?.bytenr !== it.key.objectid) shared = true;
      else owned(it.key.offset, block);
      extent.delete(it.key);
    } else if (t === BTRFS_SHARED_DATA_REF_KEY || ei?.inline_refs.some((r) => r.type === BTRFS_SHARED_DATA_REF_KEY)) {
      shared = true;
    }
  }
  // A subvolume tree whose blocks are all its own stays where it is, read only if the receive needs it
  // (a snapshot's parent, a clone source); otherwise it is loaded and rewritten like the others.
  for (const root of subvolRoots) {
    const blocks = blocksOf.get(root.id) ?? [];
    const top = blocks.find((b) => b.bytenr === root.bytenr);
    if (!shared && top && top.level === root.level) {
      const committed = { bytenr: root.bytenr, level: root.level, generation: root.generation, blocks };
      fs.trees.set(root.id, new TreeState(root.id, new BTree(fs.store, root.id, root), false, committed));
    } else {
      fs.trees.set(root.id, new TreeState(root.id, await loadTree(root), true));
    }
  }
  // Every tree gets blocks of its own at the next commit, so references the kernel kept implicit (file
  // extent items in tree blocks a snapshot shares, shared back references by block address) all become
  // explicit: recount every data extent from the file extent items that point at it.
  if (shared) rebuildDataRefs(fs);

  for (const it of fs.trees.get(BTRFS_DEV_TREE_OBJECTID)!.items.entries()) {
    if (it.key.type === BTRFS_DEV_EXTENT_KEY) fs.devUsed.add(it.key.offset, it.key.offset + decodeDevExtent(it.data).length);
  }
  for (const c of chunks.all()) {
    if (!(c.type & BTRFS_BLOCK_GROUP_DATA)) continue;
    fs.dataFree.add(c.logical, c.logical + c.length);
    for (const [s, e] of chunks.superExcluded(c)) fs.dataFree.remove(s, e);
  }
  for (const it of extent.entries()) {
    if (it.key.type === BTRFS_EXTENT_ITEM_KEY) fs.dataFree.remove(it.key.objectid, it.key.objectid + it.key.offset);
  }
  initRootItems(fs);
  return fs;
}

/**
 * Recounts the references of data extents from the file extent items of every subvolume tree and stores
 * them as ordinary (root, inode, offset) references: shared back references name tree blocks by address,
 * and those move at the next commit; implicit references through shared tree blocks become real ones.
 * An extent no loaded tree points at (a subvolume the kernel's cleaner had not finished dropping) is left
 * as it was.
 */
function rebuildDataRefs(fs: Filesystem): void {
  const extent = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
  // in batches of extents, each batch one walk over the subvolume trees: memory stays bounded on images
  // with millions of extents, at the price of a walk per batch
  let from = { objectid: 0n, type: BTRFS_EXTENT_ITEM_KEY, offset: 0n };
  for (;;) {
    const found = new Map<bigint, DataExtentInfo>();
    for (const it of extent.entries(from)) {
      if (it.key.type !== BTRFS_EXTENT_ITEM_KEY) continue;
      found.set(it.key.objectid, { bytenr: it.key.objectid, num_bytes: it.key.offset, generation: decodeExtentItem(it.data, BTRFS_EXTENT_ITEM_KEY).generation, refs: [] });
      from = { objectid: it.key.objectid + 1n, type: 0, offset: 0n };
      if (found.size >= REBUILD_BATCH) break;
    }
    if (found.size === 0) return;
    for (const t of fs.trees.values()) {
      if (!isSubvolumeTree(t.rootid)) continue;
      for (const it of t.items.entries()) {
        if (it.key.type !== BTRFS_EXTENT_DATA_KEY || it.data[20] === BTRFS_FILE_EXTENT_INLINE) continue;
        const fe = decodeFileExtentItem(it.data);
        const x = found.get(fe.disk_bytenr);
        if (!x) continue;
        const offset = BigInt.asUintN(64, it.key.offset - fe.offset);
        const r = x.refs.find((e) => e.root === t.rootid && e.objectid === it.key.objectid && e.offset === offset);
        if (r) r.count++;
        else x.refs.push({ root: t.rootid, objectid: it.key.objectid, offset, count: 1 });
      }
    }
    for (const x of found.values()) if (x.refs.length) storeDataExtent(fs, x);
  }
}

const REBUILD_BATCH = 100_000;
