import { ImageError } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_ROOT_TREE_OBJECTID, BTRFS_SUPER_INFO_SIZE, BTRFS_SUPER_MIRROR_MAX, btrfsSbOffset,
} from '../structs/constants.js';
import { encodeSuperblock } from '../structs/superblock.js';
import { insertChunkItems, keepRelocationRoom } from './chunk-alloc.js';
import { buildSuperblock, patchRootItems, type RootPtr, updateDevItem } from './commit-derived.js';
import { normalizeCsumTree } from './extents.js';
import type { FilesystemModel } from './model.js';
import type { TreeBlockRefTable } from './tree-refs.js';

/**
 * The commit protocol (kernel transaction.c, btrfs_commit_transaction). Every tree is a copy-on-write
 * tree whose changed blocks already sit at new addresses; what is left is the bookkeeping those changes
 * imply, run until it implies nothing more (commit_cowonly_roots loops the same way): the new chunks'
 * items, the queued tree block references (extent tree), block group usage and the free space tree
 * (from what the transaction allocated and freed), the DEV_ITEM, and the ROOT_ITEM of every tree whose
 * root moved. Each of these changes trees in turn, which allocates and frees blocks, so the rounds go
 * on until one changes nothing; blocks copied once are changed in place after, so that comes quickly.
 * Then: write the dirty blocks, flush, write the superblocks, flush. Nothing is laid out whole, and a
 * crash before the superblocks leaves the previous commit intact (no committed block is overwritten).
 */
const MAX_ROUNDS = 64;

export function commitFilesystem(fs: FilesystemModel, refs: TreeBlockRefTable): void {
  const gen = fs.transid;
  if (fs.store.transid !== gen) throw new ImageError('IMAGE_INTERNAL', `block store at transid ${fs.store.transid}, filesystem at ${gen}`);
  // csum items merged first (windows of data checksummed in this transaction): it changes the csum tree
  normalizeCsumTree(fs);
  for (const t of fs.touched) void t.engine; // trees made but never changed get their root block now
  // the free sets of tree block space come from the free space tree: read before this commit changes it
  fs.space.loadAll(BTRFS_BLOCK_GROUP_METADATA | BTRFS_BLOCK_GROUP_SYSTEM);

  // the superblock's root tree root must carry the commit's generation: an empty transaction copies it too
  const rootTree = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  if (fs.trees.get(BTRFS_ROOT_TREE_OBJECTID)!.engine!.root.generation !== gen) {
    const first = rootTree.first();
    if (first) rootTree.put(first.key, first.data);
  }

  // before the DEV_ITEM and superblock take the device's size
  keepRelocationRoom(fs);
  const patched = new Map<bigint, RootPtr>();
  let settled = false;
  for (let round = 0; round < MAX_ROUNDS && !settled; round++) {
    let changed = false;
    while (fs.pendingChunks.length) {
      insertChunkItems(fs, fs.pendingChunks.shift()!);
      changed = true;
    }
    if (refs.run()) changed = true;
    if (fs.space.applyToTrees()) changed = true;
    if (updateDevItem(fs)) changed = true;
    if (patchRootItems(fs, patched)) changed = true;
    settled = !changed;
  }
  if (!settled) throw new ImageError('IMAGE_INTERNAL', `commit did not settle in ${MAX_ROUNDS} rounds`);

  // every new tree block, then durable before any superblock points at them
  fs.store.writeDirty();
  flushDevice(fs);
  const rootOf = (id: bigint): RootPtr => fs.trees.get(id)?.engine?.root ?? { bytenr: 0n, level: 0, generation: 0n };
  const sb = buildSuperblock(fs, rootOf, gen);
  for (let m = 0; m < BTRFS_SUPER_MIRROR_MAX; m++) {
    const off = btrfsSbOffset(m);
    if (off + BigInt(BTRFS_SUPER_INFO_SIZE) > sb.total_bytes) break;
    fs.device.write(off, encodeSuperblock({ ...sb, bytenr: off }));
  }
  flushDevice(fs);

  // the new state is durable: adopt it
  fs.sb = sb;
  fs.bytesUsedDelta = 0n;
  for (const t of fs.touched) {
    const e = t.engine!;
    if (!e.rootChanged && t.committed) continue;
    t.committed = { ...e.root };
    e.rootChanged = false;
  }
  fs.touched.clear();
  for (const t of fs.cached) t.dropCaches();
  fs.cached.clear();
  fs.space.committed();
  fs.store.endTransaction();
}

/**
 * fsync of the image: a failure (EIO, ENOSPC on delayed allocation) is a diagnosed ImageError, not a
 * crash — the commit stops and the superblock on disk keeps pointing at the previous state.
 */
function flushDevice(fs: FilesystemModel): void {
  try {
    fs.device.flush();
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError('IMAGE_FLUSH', `cannot make the image durable (fsync): ${(e as Error).message}`, { cause: e });
  }
}
