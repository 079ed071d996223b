import { ImageError } from '../../errors.js';
import { BTRFS_MAX_LEVEL } from '../structs/constants.js';
import type { BtrfsKey } from '../structs/fs-items.js';
import { BTRFS_ITEM_SIZE } from '../structs/tree-block.js';
import { type Block, leafRoom, nodePtrs } from './block.js';
import { BTree } from './ctree.js';
import type { BlockStore, CowHooks } from './store.js';

/**
 * Building a tree from items already in key order, leaves filled to the byte and nodes to the fanout
 * (what mkfs and a full copy want: the smallest valid tree). Only one block per level is open at a
 * time, so memory does not follow the item count.
 */
export function buildTree(store: BlockStore, rootid: bigint, items: Iterable<{ key: BtrfsKey; data: Uint8Array }>, hooks?: CowHooks): BTree {
  const room = leafRoom(store.nodesize);
  const fanout = nodePtrs(store.nodesize);
  // open[level] = the block being filled at that level
  const open: Block[] = [store.create(rootid, 0)];
  const push = (level: number, child: Block): void => {
    let node = open[level];
    if (!node) {
      if (level >= BTRFS_MAX_LEVEL) throw new ImageError('IMAGE_TREE_TOO_DEEP', `tree ${rootid} would exceed ${BTRFS_MAX_LEVEL} levels`);
      node = open[level] = store.create(rootid, level);
    } else if (node.nritems >= fanout) {
      push(level + 1, node);
      node = open[level] = store.create(rootid, level);
    }
    node.insertPtr(node.nritems, child.keys[0]!, child.bytenr, child.generation);
  };
  let prev: BtrfsKey | undefined;
  for (const it of items) {
    if (prev && compare(prev, it.key) >= 0) throw new ImageError('IMAGE_INTERNAL', `buildTree: items of tree ${rootid} not in key order`);
    prev = it.key;
    const need = BTRFS_ITEM_SIZE + it.data.length;
    if (need > room) throw new ImageError('IMAGE_ITEM_TOO_BIG', `item of ${it.data.length} bytes does not fit a leaf (tree ${rootid})`);
    let leaf = open[0]!;
    if (leaf.used + need > room) {
      push(1, leaf);
      leaf = open[0] = store.create(rootid, 0);
    }
    leaf.insertItem(leaf.nritems, it.key, it.data);
  }
  // close the open blocks bottom up; a level whose parent was never opened is the root
  for (let level = 0; level < open.length; level++) {
    const b = open[level]!;
    if (level + 1 < open.length) push(level + 1, b);
  }
  const top = open[open.length - 1]!;
  const t = new BTree(store, rootid, { bytenr: top.bytenr, level: top.level, generation: top.generation }, hooks);
  t.rootChanged = true;
  return t;
}

function compare(a: BtrfsKey, b: BtrfsKey): number {
  if (a.objectid !== b.objectid) return a.objectid < b.objectid ? -1 : 1;
  if (a.type !== b.type) return a.type - b.type;
  return a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0;
}

/** Frees every block of a tree (a tree replaced or deleted in this transaction). Reads its nodes only. */
export function dropTree(t: BTree): void {
  const visit = (bytenr: bigint, level: number, generation: bigint): void => {
    if (level > 0) {
      const b = t.store.read(bytenr, { level, generation, owner: t.rootid });
      for (let i = 0; i < b.nritems; i++) visit(b.ptrs[i]!, level - 1, b.ptrGens[i]!);
    }
    t.store.freeAddr(bytenr, t.rootid, level);
  };
  visit(t.root.bytenr, t.root.level, t.root.generation);
}

/** Every block of the tree with its level and generation, root last (reads nodes, not leaves). */
export function treeBlocks(t: BTree): Array<{ bytenr: bigint; level: number; generation: bigint }> {
  const out: Array<{ bytenr: bigint; level: number; generation: bigint }> = [];
  const visit = (bytenr: bigint, level: number, generation: bigint): void => {
    if (level > 0) {
      const b = t.store.read(bytenr, { level, generation, owner: t.rootid });
      for (let i = 0; i < b.nritems; i++) visit(b.ptrs[i]!, level - 1, b.ptrGens[i]!);
    }
    out.push({ bytenr, level, generation });
  };
  visit(t.root.bytenr, t.root.level, t.root.generation);
  return out;
}
