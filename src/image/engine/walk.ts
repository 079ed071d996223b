import { type BtrfsKey, compareKeys } from '../structs/fs-items.js';
import type { Block } from './block.js';
import type { BTree } from './ctree.js';
import { MIN_KEY, nextLeaf, successor } from './path.js';

/**
 * Walks over a tree's items and blocks that read along the leaves (BTree.entries, range, blocks): apart
 * from ctree.ts, whose search and copy-on-write path every change goes through.
 */

/**
 * Items with min <= key <= max in key order, one leaf at a time: each leaf's items are taken before
 * they are yielded and the next leaf is found by a fresh search after the last key given, so the tree
 * may change while the walk runs (keys inserted meanwhile may or may not be visited).
 */
export function* treeEntries(t: BTree, min?: BtrfsKey, max?: BtrfsKey): Generator<{ key: BtrfsKey; data: Uint8Array }> {
  let from: BtrfsKey | undefined = min ?? MIN_KEY;
  while (from) {
    const { path } = t.search(from, false);
    if (path.slots[0]! >= path.nodes[0]!.nritems && !nextLeaf(t, path)) return;
    const leaf = path.nodes[0]!;
    const keys = leaf.keys.slice(path.slots[0]);
    const data = leaf.data.slice(path.slots[0]);
    for (let i = 0; i < keys.length; i++) {
      if (max && compareKeys(keys[i]!, max) > 0) return;
      yield { key: keys[i]!, data: data[i]! };
    }
    from = successor(keys[keys.length - 1]!);
  }
}

/**
 * Items with min <= key <= max in key order, taken at once: one search, then along the leaves. Most
 * ranges asked for are a few items of one leaf (an extent's items), where treeEntries() would copy the
 * rest of the leaf's keys and payloads before looking at the first.
 */
export function treeRange(t: BTree, min: BtrfsKey, max: BtrfsKey): { key: BtrfsKey; data: Uint8Array }[] {
  const out: { key: BtrfsKey; data: Uint8Array }[] = [];
  const { path } = t.search(min, false);
  let slot = path.slots[0]!;
  for (;;) {
    const leaf = path.nodes[0]!;
    if (slot >= leaf.nritems) {
      if (!nextLeaf(t, path)) return out;
      slot = 0;
      continue;
    }
    const key = leaf.keys[slot]!;
    if (compareKeys(key, max) > 0) return out;
    out.push({ key, data: leaf.data[slot]! });
    slot++;
  }
}

/** Every block of the tree, top down (for checks and tests; reads every node). */
export function* treeBlocks(t: BTree, b: Block = t.rootBlock()): Generator<Block> {
  yield b;
  if (b.level > 0) for (let i = 0; i < b.nritems; i++) yield* treeBlocks(t, t.child(b, i));
}
