import { ImageError } from '../../errors.js';
import type { BlockDevice } from '../device.js';
import { ImageReader } from '../read/image.js';
import { fromBlockDevice } from '../read/source.js';
import { metadataFsid } from '../read/superblock.js';
import type { TreeRoot } from '../read/tree.js';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM,
  BTRFS_CHUNK_ITEM_KEY, BTRFS_CHUNK_TREE_OBJECTID, BTRFS_DEV_EXTENT_KEY, BTRFS_DEV_TREE_OBJECTID,
  BTRFS_EXTENT_FLAG_TREE_BLOCK, BTRFS_EXTENT_ITEM_KEY,
  BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID, BTRFS_METADATA_ITEM_KEY, BTRFS_QUOTA_TREE_OBJECTID, BTRFS_ROOT_ITEM_KEY,
  BTRFS_ROOT_TREE_OBJECTID, BTRFS_SHARED_BLOCK_REF_KEY, BTRFS_TREE_BLOCK_REF_KEY,
  BTRFS_TREE_RELOC_OBJECTID,
} from '../structs/constants.js';
import { decodeChunk, decodeDevExtent } from '../structs/chunk-items.js';
import { decodeExtentItem, decodeRootItem } from '../structs/tree-items.js';
import { ChunkMap } from './chunks.js';
import { checkWritableFeatures } from './features.js';
import { Filesystem, type GrowthOptions, isCowTree, TreeState } from './filesystem.js';
import { loadCommittedTree } from './lazy-tree.js';
import { checkWritable } from './open-checks.js';
import { BTree } from '../engine/ctree.js';
import { ItemMap, type Key } from './item-map.js';
import { PageStore } from './page-store.js';
import { initRootItems } from './subvol.js';

const U64_MAX = (1n << 64n) - 1n;
const ALL = { from: { objectid: 0n, type: 0, offset: 0n }, to: { objectid: U64_MAX, type: 255, offset: U64_MAX } };

/**
 * Load an existing single-device image (made by mkfs.btrfs, the kernel, or this writer) into the
 * writer's model. The root, extent, chunk and dev trees are read (checksums, levels, generations, owners
 * and keys verified) and marked dirty, so derived content (their tree-block items, block group usage,
 * free space tree) is rebuilt rather than trusted. The copy-on-write trees (subvolumes, shared or not,
 * and the csum, uuid and data relocation trees) stay on disk: a block is read when a lookup or a change
 * reaches it, and a change copies only its path.
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
  const cowRoots: TreeRoot[] = [];
  for (const it of rootItems.range({ objectid: 0n, type: 0, offset: 0n }, ALL.to)) {
    if (it.key.type !== BTRFS_ROOT_ITEM_KEY) continue;
    const id = it.key.objectid;
    if (id === BTRFS_QUOTA_TREE_OBJECTID) refuse('IMAGE_QUOTA', 'quotas are enabled (qgroup accounting is not maintained)');
    if (id === BTRFS_TREE_RELOC_OBJECTID) refuse('IMAGE_RELOC', 'a balance/relocation is in progress');
    const ri = decodeRootItem(it.data);
    const root = { id, bytenr: ri.bytenr, level: ri.level, generation: ri.generation };
    // copy-on-write trees (subvolumes, csum, uuid, data relocation) wait for the extent tree: unless
    // blocks are shared, they stay on disk until used
    if (isCowTree(id)) cowRoots.push(root);
    else fs.trees.set(id, new TreeState(id, id === BTRFS_FREE_SPACE_TREE_OBJECTID ? new ItemMap(pageStore) : loadCommittedTree(fs, id, root), true));
  }
  for (const id of [BTRFS_EXTENT_TREE_OBJECTID, BTRFS_DEV_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID]) {
    if (!fs.trees.has(id)) refuse('IMAGE_NO_TREE', `tree ${id} is missing`);
  }

  // Tree-block items of the item-map trees are regenerated by every commit, so they leave the model
  // here. Those of copy-on-write trees stay: the engine keeps them up to date, whether the blocks are
  // shared (kernel snapshots, FULL_BACKREF, references by block address) or not. Every tree block of
  // the committed state is off limits until the next commit is durable.
  const extent = fs.trees.get(BTRFS_EXTENT_TREE_OBJECTID)!.items;
  let pending: { bytenr: bigint; keys: Key[]; kept: boolean } | undefined;
  const settle = (): void => {
    if (pending && !pending.kept) for (const k of pending.keys) extent.delete(k);
    pending = undefined;
  };
  for (const it of extent.entries()) {
    const t = it.key.type;
    // a data extent's item (most of the tree) is told apart by its flags alone, without decoding its refs
    // (one too short for its flags is decoded, which refuses it as before)
    const treeBlock = t === BTRFS_METADATA_ITEM_KEY || (t === BTRFS_EXTENT_ITEM_KEY && (it.data.length < 24 ||
      (new DataView(it.data.buffer, it.data.byteOffset, 24).getBigUint64(16, true) & BTRFS_EXTENT_FLAG_TREE_BLOCK) !== 0n));
    if (treeBlock) {
      const ei = decodeExtentItem(it.data, t);
      settle();
      const kept = ei.inline_refs.some((r) => r.type === BTRFS_SHARED_BLOCK_REF_KEY || (r.type === BTRFS_TREE_BLOCK_REF_KEY && isCowTree(r.root)));
      pending = { bytenr: it.key.objectid, keys: [it.key], kept };
      fs.committedBusy.add(it.key.objectid, it.key.objectid + BigInt(sb.nodesize));
    } else if ((t === BTRFS_TREE_BLOCK_REF_KEY || t === BTRFS_SHARED_BLOCK_REF_KEY) && pending?.bytenr === it.key.objectid) {
      pending.keys.push(it.key);
      if (t === BTRFS_SHARED_BLOCK_REF_KEY || isCowTree(it.key.offset)) pending.kept = true;
    } else if (pending && it.key.objectid !== pending.bytenr) {
      settle();
    }
  }
  settle();
  // Copy-on-write trees stay where they are: a block is read when a change or a lookup reaches it (a
  // snapshot's parent, a clone source), and a change copies only its path.
  for (const root of cowRoots) {
    const committed = { bytenr: root.bytenr, level: root.level, generation: root.generation, blocks: [] };
    fs.trees.set(root.id, new TreeState(root.id, new BTree(fs.store, root.id, root), false, committed));
  }

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
