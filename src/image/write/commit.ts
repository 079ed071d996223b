import { ImageError } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_CHUNK_TREE_OBJECTID,
  BTRFS_DEV_TREE_OBJECTID, BTRFS_EXTENT_FLAG_TREE_BLOCK, BTRFS_EXTENT_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID,
  BTRFS_FREE_SPACE_TREE_OBJECTID, BTRFS_METADATA_ITEM_KEY, BTRFS_ROOT_TREE_OBJECTID, BTRFS_SUPER_INFO_SIZE,
  BTRFS_SUPER_MIRROR_MAX, BTRFS_TREE_BLOCK_REF_KEY, btrfsSbOffset,
} from '../structs/constants.js';
import { compareKeys } from '../structs/fs-items.js';
import { encodeSuperblock } from '../structs/superblock.js';
import { encodeExtentItem } from '../structs/tree-items.js';
import { layoutTree, serializeTree, type TreeLayout } from './btree.js';
import { buildSuperblock, freeSpaceItems, patchRootItems, type RootPtr, updateBlockGroups, updateDevItem } from './commit-derived.js';
import { normalizeCsumTree } from './extents.js';
import { treeBlocks } from '../engine/bulk.js';
import type { FilesystemModel } from './model.js';
import type { CommittedTree, TreeBlockRef } from './tree-state.js';
import type { Item } from './item-map.js';
import { RangeSet } from './ranges.js';

/**
 * The commit protocol. Every dirty tree, plus the trees derived from the others (root, extent, free
 * space) and the chunk and dev trees, is serialized into blocks allocated outside every block of the
 * committed state; clean trees keep their blocks. Derived content depends on where blocks land (the
 * extent tree lists every tree block, itself included), so layout and allocation iterate to a fixed
 * point. Then: write blocks, flush, write superblocks, flush.
 */
const ALWAYS_WRITTEN = [BTRFS_ROOT_TREE_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_CHUNK_TREE_OBJECTID, BTRFS_DEV_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID];
const MAX_ROUNDS = 32;

interface Plan {
  /** The tree's items in key order, produced afresh on each call (trees do not change during a commit). */
  items: () => Iterable<Item>;
  layout: TreeLayout;
  addrs: bigint[];
}

export function commitFilesystem(fs: FilesystemModel): void {
  // copy-on-write trees already sit in their blocks: take their roots and block lists, restored if the
  // commit fails so the model keeps describing what the disk's superblock points at
  const before = new Map<bigint, CommittedTree | undefined>();
  try {
    // csum items merged first (windows of data checksummed in this transaction): it changes the csum tree
    normalizeCsumTree(fs);
    for (const t of fs.trees.values()) {
      const e = t.engine;
      if (!e || (!e.rootChanged && t.committed)) continue;
      before.set(t.rootid, t.committed);
      t.committed = { ...e.root, blocks: treeBlocks(e) };
    }
    commitTrees(fs);
  } catch (err) {
    for (const [id, c] of before) {
      const t = fs.trees.get(id);
      if (t) t.committed = c;
    }
    throw err;
  }
  for (const id of before.keys()) fs.trees.get(id)!.engine!.rootChanged = false;
  fs.space.committed();
  fs.store.endTransaction();
}

function commitTrees(fs: FilesystemModel): void {
  const gen = fs.transid;
  if (fs.store.transid !== gen) throw new ImageError('IMAGE_INTERNAL', `block store at transid ${fs.store.transid}, filesystem at ${gen}`);
  const nodesize = BigInt(fs.nodesize);
  for (const id of ALWAYS_WRITTEN) fs.trees.get(id)!.dirty = true;
  const written = [...fs.trees.values()].filter((t) => t.dirty && !t.isEngine).map((t) => t.rootid).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const t of fs.trees.values()) {
    if (!t.dirty && !t.committed) throw new ImageError('IMAGE_INTERNAL', `tree ${t.rootid} is clean but was never committed`);
  }

  // data extents do not move during a commit: their footprint is computed once
  const dataUsed = new RangeSet();
  const cowUsed = new RangeSet();
  for (const it of fs.trees.get(BTRFS_EXTENT_TREE_OBJECTID)!.items.entries()) {
    if (it.key.type === BTRFS_EXTENT_ITEM_KEY) dataUsed.add(it.key.objectid, it.key.objectid + it.key.offset);
    // blocks of the copy-on-write trees keep their own items (cow-refs.ts); the others are derived below
    else if (it.key.type === BTRFS_METADATA_ITEM_KEY) cowUsed.add(it.key.objectid, it.key.objectid + nodesize);
  }

  // Only the derived trees and the chunk and dev trees (chunks added, DEV_ITEM updated) change during a
  // commit: the layout of every other tree is computed once, not again in each round.
  const changing = new Set([BTRFS_ROOT_TREE_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID, BTRFS_CHUNK_TREE_OBJECTID, BTRFS_DEV_TREE_OBJECTID]);
  const fixedLayouts = new Map<bigint, TreeLayout>();
  const layoutOf = (id: bigint): TreeLayout => {
    const cached = fixedLayouts.get(id);
    if (cached) return cached;
    const layout = layoutTree(sizesOf(fs.trees.get(id)!.items.entries()), fs.nodesize);
    if (!changing.has(id)) fixedLayouts.set(id, layout);
    return layout;
  };

  let counts = new Map<bigint, number>();
  for (const id of written) counts.set(id, layoutOf(id).blockCount);

  let plans: Map<bigint, Plan> | undefined;
  for (let round = 0; round < MAX_ROUNDS && !plans; round++) {
    updateDevItem(fs);
    const addrs = allocateBlocks(fs, written, counts, cowUsed);
    if (!addrs) continue; // a chunk was added: lay everything out again
    const roots = new Map<bigint, { bytenr: bigint; level: number; generation: bigint; blocks: TreeBlockRef[] }>();
    // non-derived trees are final: lay them out for real
    const trial = new Map<bigint, Plan>();
    const derived = new Set([BTRFS_ROOT_TREE_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID]);
    const place = (id: bigint, items: () => Iterable<Item>): void => {
      const layout = layoutTree(sizesOf(items()), fs.nodesize);
      trial.set(id, { items, layout, addrs: addrs.get(id)! });
    };
    for (const id of written) {
      if (!derived.has(id)) trial.set(id, { items: () => fs.trees.get(id)!.items.entries(), layout: layoutOf(id), addrs: addrs.get(id)! });
    }
    // Derived trees are laid out with the block counts allocated to them; if the content then needs a
    // different count, the round is redone with the new counts.
    const blocksOf = (id: bigint): TreeBlockRef[] => {
      const a = addrs.get(id);
      if (!a) return fs.trees.get(id)!.committed!.blocks;
      return blockRefs(a, counts.get(id)!, fs.nodesize);
    };
    for (const t of fs.trees.values()) {
      const blocks = blocksOf(t.rootid);
      const root = blocks[blocks.length - 1]!;
      roots.set(t.rootid, addrs.has(t.rootid)
        ? { bytenr: root.bytenr, level: root.level, generation: gen, blocks }
        : { ...t.committed!, blocks });
    }
    patchRootItems(fs, roots);
    place(BTRFS_ROOT_TREE_OBJECTID, () => fs.trees.get(BTRFS_ROOT_TREE_OBJECTID)!.items.entries());
    const metaUsed = cowUsed.clone();
    const metaItems: Item[] = [];
    for (const [rootid, r] of roots) {
      if (fs.trees.get(rootid)!.isEngine) continue;
      for (const b of r.blocks) {
        metaUsed.add(b.bytenr, b.bytenr + nodesize);
        metaItems.push({
          key: { objectid: b.bytenr, type: BTRFS_METADATA_ITEM_KEY, offset: BigInt(b.level) },
          data: encodeExtentItem({ refs: 1n, generation: b.generation ?? r.generation, flags: BTRFS_EXTENT_FLAG_TREE_BLOCK, inline_refs: [{ type: BTRFS_TREE_BLOCK_REF_KEY, root: rootid }] }),
        });
      }
    }
    metaItems.sort((a, b) => compareKeys(a.key, b.key));
    updateBlockGroups(fs, dataUsed, metaUsed);
    place(BTRFS_EXTENT_TREE_OBJECTID, () => mergeSorted(fs.trees.get(BTRFS_EXTENT_TREE_OBJECTID)!.items.entries(), metaItems));
    const freeSpace = freeSpaceItems(fs, dataUsed, metaUsed);
    place(BTRFS_FREE_SPACE_TREE_OBJECTID, () => freeSpace);

    let stable = true;
    const next = new Map<bigint, number>();
    for (const id of written) {
      const n = trial.get(id)!.layout.blockCount;
      next.set(id, n);
      if (n !== counts.get(id)) stable = false;
    }
    if (stable) plans = trial;
    else counts = next;
  }
  if (!plans) throw new ImageError('IMAGE_INTERNAL', `commit did not reach a fixed point in ${MAX_ROUNDS} rounds`);

  // write every new tree block (all copies), then make them durable before any superblock points at them
  fs.store.writeDirty();
  for (const id of written) {
    const p = plans.get(id)!;
    const info = { fsid: fs.headerFsid, chunkTreeUuid: fs.chunkTreeUuid, generation: gen, owner: id, csumType: fs.sb.csum_type };
    for (const blk of serializeTree(p.items(), p.layout, p.addrs, fs.nodesize, info)) {
      for (const phys of fs.chunks.toPhysical(blk.bytenr, fs.nodesize)) fs.device.write(phys, blk.bytes);
    }
  }
  flushDevice(fs);

  const rootOf = (id: bigint): RootPtr => {
    const p = plans!.get(id);
    if (p) return { bytenr: p.addrs[p.layout.blockCount - 1]!, level: p.layout.levels.length - 1, generation: gen };
    return fs.trees.get(id)?.committed ?? { bytenr: 0n, level: 0, generation: 0n };
  };
  const sb = buildSuperblock(fs, rootOf, gen);
  for (let m = 0; m < BTRFS_SUPER_MIRROR_MAX; m++) {
    const off = btrfsSbOffset(m);
    if (off + BigInt(BTRFS_SUPER_INFO_SIZE) > sb.total_bytes) break;
    fs.device.write(off, encodeSuperblock({ ...sb, bytenr: off }));
  }
  flushDevice(fs);

  // the new state is durable: adopt it
  fs.sb = sb;
  const busy = cowUsed.clone();
  for (const t of fs.trees.values()) {
    const p = plans.get(t.rootid);
    if (p) {
      const blocks = blockRefs(p.addrs, p.layout.blockCount, fs.nodesize, p.layout);
      const root = blocks[blocks.length - 1]!;
      t.committed = { bytenr: root.bytenr, level: root.level, generation: gen, blocks };
      if (!t.isEngine) t.dirty = false;
    }
    if (!t.isEngine) for (const b of t.committed!.blocks) busy.add(b.bytenr, b.bytenr + nodesize);
  }
  fs.committedBusy = busy;
  for (const [s, e] of fs.pinned) fs.dataFree.add(s, e);
  fs.pinned = new RangeSet();
}

/** Block refs (address + level) of a layout: leaves first, then each node level, root last. */
function blockRefs(addrs: bigint[], count: number, nodesize: number, layout?: TreeLayout): TreeBlockRef[] {
  const out: TreeBlockRef[] = [];
  if (layout) {
    let i = 0;
    layout.levels.forEach((lvl, level) => lvl.forEach(() => out.push({ bytenr: addrs[i++]!, level })));
    return out;
  }
  // before layout is final only the levels' shape matters for root level: derive it from the count
  const lay = levelsForCount(count, nodesize);
  let i = 0;
  lay.forEach((n, level) => {
    for (let k = 0; k < n; k++) out.push({ bytenr: addrs[i++]!, level });
  });
  return out;
}

/** Blocks per level of a tree with `count` blocks in total (leaves + nodes, as layoutTree builds it). */
function levelsForCount(count: number, nodesize: number): number[] {
  const fanout = Math.floor((nodesize - 101) / 33);
  for (let leaves = count; leaves >= 1; leaves--) {
    const lv = [leaves];
    let below = leaves;
    while (below > 1) {
      below = Math.ceil(below / fanout);
      lv.push(below);
    }
    if (lv.reduce((a, b) => a + b, 0) === count) return lv;
  }
  return [count];
}

function allocateBlocks(fs: FilesystemModel, written: bigint[], counts: Map<bigint, number>, cowUsed: RangeSet): Map<bigint, bigint[]> | undefined {
  const nodesize = BigInt(fs.nodesize);
  const pool = (type: bigint): RangeSet => {
    const free = new RangeSet();
    for (const c of fs.chunks.all()) {
      if ((c.type & type) === 0n) continue;
      free.add(c.logical, c.logical + c.length);
      for (const [s, e] of fs.chunks.superExcluded(c)) free.remove(s, e);
    }
    for (const [s, e] of fs.committedBusy) free.remove(s, e);
    for (const [s, e] of cowUsed) free.remove(s, e);
    // clean trees keep their blocks
    for (const t of fs.trees.values()) if (!written.includes(t.rootid) && t.committed) for (const b of t.committed.blocks) free.remove(b.bytenr, b.bytenr + nodesize);
    return free;
  };
  const meta = pool(BTRFS_BLOCK_GROUP_METADATA);
  const sys = pool(BTRFS_BLOCK_GROUP_SYSTEM);
  const out = new Map<bigint, bigint[]>();
  for (const id of written) {
    const from = id === BTRFS_CHUNK_TREE_OBJECTID ? sys : meta;
    const a: bigint[] = [];
    for (let i = 0; i < counts.get(id)!; i++) {
      const at = from.findFree(nodesize, nodesize);
      if (at === undefined) {
        // reserve generously: the rest of this commit plus the next one's copy-on-write
        let need = 0n;
        for (const [tid, n] of counts) if ((tid === BTRFS_CHUNK_TREE_OBJECTID) === (id === BTRFS_CHUNK_TREE_OBJECTID)) need += BigInt(n) * nodesize;
        fs.addChunk(id === BTRFS_CHUNK_TREE_OBJECTID ? BTRFS_BLOCK_GROUP_SYSTEM : BTRFS_BLOCK_GROUP_METADATA, 2n * need);
        return undefined;
      }
      from.remove(at, at + nodesize);
      a.push(at);
    }
    out.set(id, a);
  }
  return out;
}


function* mergeSorted(a: Iterable<Item>, b: Item[]): Generator<Item> {
  let j = 0;
  for (const it of a) {
    while (j < b.length && compareKeys(b[j]!.key, it.key) < 0) yield b[j++]!;
    yield it;
  }
  while (j < b.length) yield b[j++]!;
}

function* sizesOf(items: Iterable<Item>): Generator<number> {
  for (const it of items) yield it.data.length;
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
