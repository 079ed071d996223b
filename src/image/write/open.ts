import { cannotModify } from '../../errors.js';
import type { BlockDevice } from '../device.js';
import { MAX_KEY, MIN_KEY } from '../engine/path.js';
import { ImageReader } from '../read/image.js';
import { fromBlockDevice } from '../read/source.js';
import { metadataFsid } from '../read/superblock.js';
import type { TreeRoot } from '../read/tree.js';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_TREE_OBJECTID, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_CHUNK_ITEM_KEY,
  BTRFS_CHUNK_TREE_OBJECTID, BTRFS_DEV_TREE_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID,
  BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_TREE_OBJECTID, BTRFS_TREE_RELOC_OBJECTID, BTRFS_UUID_TREE_OBJECTID,
} from '../structs/constants.js';
import { decodeChunk } from '../structs/chunk-items.js';
import { rootItemHead } from '../structs/tree-items.js';
import { checkBlockGroupTree, hasBlockGroupTree } from './block-group-tree.js';
import { ChunkMap } from './chunks.js';
import { checkWritableFeatures, hasFreeSpaceTree } from './features.js';
import { Filesystem, type GrowthOptions, TreeState } from './filesystem.js';
import { applyTreeLog, readTreeLog } from './log-replay.js';
import { checkMixedGroups } from './mixed-groups.js';
import { checkBlockGroups, checkRootItem, checkWritable } from './open-checks.js';
import { BTree } from '../engine/ctree.js';
import { checkQgroups } from './qgroups.js';
import { checkSpaceCacheV1, invalidateSpaceCacheInodes } from './space-cache-v1.js';
import type { Key } from './items.js';
import { fixSnapshotKeys, initRootItems, needsRootItemInit, needsSnapshotKeyFix } from './subvol.js';

const ALL = { from: MIN_KEY, to: MAX_KEY };

/**
 * Open an existing single-device image (made by mkfs.btrfs, the kernel, or this writer) for changes.
 * What is read: the superblock, the chunk tree (the chunk map) and the root tree's ROOT_ITEMs (which
 * trees exist, O(subvolumes)) and the free space tree's items of the METADATA and SYSTEM block groups.
 * Every tree stays on disk as a copy-on-write tree: a block is read when a lookup or a change reaches
 * it, and a change copies only its path. Data block groups' free space is read on their first
 * allocation; the extent tree only where references change. Opening costs the trees' heights and the
 * metadata block groups' free space items, not the image's size.
 */
export async function openFilesystem(device: BlockDevice, growth: GrowthOptions = {}): Promise<Filesystem> {
  const img = await ImageReader.open(fromBlockDevice(device));
  const sb = img.superblock;
  const refuse = (code: string, why: string): never => {
    throw cannotModify(code, why);
  };
  checkWritableFeatures(sb);
  checkMixedGroups(sb);
  checkBlockGroupTree(sb);
  checkSpaceCacheV1(sb);
  await checkWritable(img);
  // a tree log: replayed below, into the trees, as a mount replays it (log-replay.ts)
  const log = await readTreeLog(img);

  const chunkRoot: TreeRoot = { id: BTRFS_CHUNK_TREE_OBJECTID, bytenr: sb.chunk_root, level: sb.chunk_root_level, generation: sb.chunk_root_generation };
  const chunkBlock = await img.trees.readBlock(sb.chunk_root, { level: sb.chunk_root_level, generation: sb.chunk_root_generation, owner: BTRFS_CHUNK_TREE_OBJECTID });
  const chunks = new ChunkMap();
  let metaProfile = 0n;
  let dataProfile = 0n;
  for await (const it of img.trees.iterate(chunkRoot, { objectid: 0n, type: BTRFS_CHUNK_ITEM_KEY, offset: 0n }, ALL.to)) {
    if (it.key.type !== BTRFS_CHUNK_ITEM_KEY) continue;
    const c = decodeChunk(it.data);
    chunks.add({ logical: it.key.offset, length: c.length, type: c.type, stripes: c.stripes });
    if (c.type & (BTRFS_BLOCK_GROUP_METADATA | BTRFS_BLOCK_GROUP_SYSTEM)) metaProfile |= c.type & BTRFS_BLOCK_GROUP_DUP;
    // (a mixed DATA|METADATA chunk gives both)
    if (c.type & BTRFS_BLOCK_GROUP_DATA) dataProfile |= c.type & BTRFS_BLOCK_GROUP_DUP;
  }

  const fs = new Filesystem(device, { ...sb, dev_item: { ...sb.dev_item }, super_roots: sb.super_roots.slice() }, metaProfile, growth);
  fs.dataProfile = dataProfile;
  fs.chunkTreeUuid = chunkBlock.header.chunk_tree_uuid;
  fs.headerFsid = metadataFsid(sb);
  for (const c of chunks.all()) {
    fs.chunks.add(c);
    // device space in use = the chunks' stripes (each has its DEV_EXTENT): the dev tree is not read
    for (const st of c.stripes) fs.devUsed.add(st.offset, st.offset + c.length);
  }
  const keep = (root: TreeRoot): void => {
    const committed = { bytenr: root.bytenr, level: root.level, generation: root.generation };
    fs.addTree(new TreeState(root.id, { engine: () => new BTree(fs.store, root.id, root) }, committed, fs.treeOwner));
  };
  keep(chunkRoot);
  keep({ id: BTRFS_ROOT_TREE_OBJECTID, bytenr: sb.root, level: sb.root_level, generation: sb.generation });
  const rootTree = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  const uninit: Key[] = [];
  const rekey: Key[] = [];
  for (const it of rootTree.range({ objectid: 0n, type: 0, offset: 0n }, ALL.to)) {
    if (it.key.type !== BTRFS_ROOT_ITEM_KEY) continue;
    const id = it.key.objectid;
    if (id === BTRFS_TREE_RELOC_OBJECTID) refuse('IMAGE_RELOC', 'a balance/relocation is in progress');
    if (fs.trees.has(id)) refuse('IMAGE_BAD_ROOT_TREE', `tree ${id} has two ROOT_ITEMs`);
    const ri = rootItemHead(it.data);
    checkRootItem(img, id, ri);
    keep({ id, bytenr: ri.bytenr, level: ri.level, generation: ri.generation });
    if (needsRootItemInit(id, it.data)) uninit.push(it.key);
    if (needsSnapshotKeyFix(it.key, it.data)) rekey.push(it.key);
  }
  const required = [BTRFS_EXTENT_TREE_OBJECTID, BTRFS_DEV_TREE_OBJECTID];
  if (hasFreeSpaceTree(sb)) required.push(BTRFS_FREE_SPACE_TREE_OBJECTID);
  if (hasBlockGroupTree(sb)) required.push(BTRFS_BLOCK_GROUP_TREE_OBJECTID);
  for (const id of required) if (!fs.trees.has(id)) refuse('IMAGE_NO_TREE', `tree ${id} is missing`);
  checkBlockGroups(fs);
  // filesystems made before Linux 3.12 have none until a mount creates it and scans every subvolume into
  // it; a receive records its subvolumes there (and finds parents there)
  if (!fs.trees.has(BTRFS_UUID_TREE_OBJECTID)) refuse('IMAGE_NO_TREE', 'it has no UUID tree (made before Linux 3.12 and not mounted since: a mount creates it)');
  checkQgroups(fs);
  initRootItems(fs, uninit);
  fixSnapshotKeys(fs, rekey);
  // Free space of the tree block groups is read now, before any tree changes: built later, on the first
  // allocation in a block group, it would read its source tree while a change to that tree is half done.
  // (Data block groups are read on their first data allocation, which no tree change makes.)
  fs.space.loadAll(BTRFS_BLOCK_GROUP_METADATA | BTRFS_BLOCK_GROUP_SYSTEM);
  // (a change to the root tree: after the free space is read)
  invalidateSpaceCacheInodes(fs);
  if (log) applyTreeLog(fs, log);
  return fs;
}
