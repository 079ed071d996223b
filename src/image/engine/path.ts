import type { BtrfsKey } from '../structs/fs-items.js';
import type { Block } from './block.js';
import type { BlockStore } from './store.js';
import { U64_MAX } from '../structs/constants.js';

/**
 * Paths through a copy-on-write tree (btrfs_path) and the walks along them. The tree is seen through
 * PathTree, the part of BTree that moving along a path and the split/merge code (balance.ts) use, so
 * those modules and ctree.ts do not import each other.
 */

/** btrfs_path: the block and slot at each level, leaf at 0. */
export interface Path {
  nodes: Block[];
  slots: number[];
}

export interface PathTree {
  readonly rootid: bigint;
  readonly nodesize: number;
  readonly store: BlockStore;
  readonly root: { readonly level: number };
  child(node: Block, slot: number): Block;
  /** Child `slot` of the (writable) node `parent`, made writable too. */
  writableChild(parent: Block, slot: number): Block;
  setRoot(b: Block): void;
  growRoot(path: Path): void;
  insertPtr(path: Path, level: number, slot: number, key: BtrfsKey, child: Block): void;
}

export const MIN_KEY: BtrfsKey = { objectid: 0n, type: 0, offset: 0n };
export const MAX_KEY: BtrfsKey = { objectid: U64_MAX, type: 255, offset: U64_MAX };

/** The smallest key after `k`, or undefined after the largest key. */
export function successor(k: BtrfsKey): BtrfsKey | undefined {
  if (k.offset < U64_MAX) return { objectid: k.objectid, type: k.type, offset: k.offset + 1n };
  if (k.type < 255) return { objectid: k.objectid, type: k.type + 1, offset: 0n };
  if (k.objectid < U64_MAX) return { objectid: k.objectid + 1n, type: 0, offset: 0n };
  return undefined;
}

/** fixup_low_keys: slot 0 of a block changed its first key; the parents' keys follow, up to the root. */
export function fixupLowKeys(path: Path, level: number, key: BtrfsKey, rootLevel: number): void {
  for (let l = level; l <= rootLevel; l++) {
    const node = path.nodes[l];
    if (!node) return;
    const slot = path.slots[l]!;
    node.keys[slot] = key;
    if (slot !== 0) return;
  }
}

/** btrfs_next_leaf: move the path to the first slot of the next leaf; false at the end of the tree. */
export function nextLeaf(t: PathTree, path: Path): boolean {
  let level = 1;
  while (level <= t.root.level && path.slots[level]! + 1 >= path.nodes[level]!.nritems) level++;
  if (level > t.root.level) return false;
  path.slots[level] = path.slots[level]! + 1;
  for (; level > 0; level--) {
    const c = t.child(path.nodes[level]!, path.slots[level]!);
    path.nodes[level - 1] = c;
    path.slots[level - 1] = 0;
  }
  return path.nodes[0]!.nritems > 0 || nextLeaf(t, path);
}

/** btrfs_prev_leaf: move the path to the last slot of the previous leaf; false at the start. */
export function prevLeaf(t: PathTree, path: Path): boolean {
  let level = 1;
  while (level <= t.root.level && path.slots[level]! === 0) level++;
  if (level > t.root.level) return false;
  path.slots[level] = path.slots[level]! - 1;
  for (; level > 0; level--) {
    const c = t.child(path.nodes[level]!, path.slots[level]!);
    path.nodes[level - 1] = c;
    path.slots[level - 1] = c.nritems - 1;
  }
  return path.slots[0]! >= 0 || prevLeaf(t, path);
}
