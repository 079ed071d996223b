import type { BtrfsKey } from '../structs/fs-items.js';
import { type Block, leafRoom, nodePtrs } from './block.js';
import { fixupLowKeys, type Path, type PathTree } from './path.js';

/**
 * Making room and keeping blocks filled (ctree.c split_leaf, push_leaf_left/right, split_node,
 * balance_level). Every block touched is writable: the path's blocks were copied on the way down,
 * siblings are copied here on their first change.
 */

/**
 * Make room for an item of `need` bytes (header included) at the path's leaf slot: push items into a
 * sibling when that frees enough, otherwise split the leaf (in three when the new item fits neither
 * half). The path ends on the leaf and slot the item goes to.
 */
export function splitLeafFor(t: PathTree, path: Path, key: BtrfsKey, need: number): void {
  const room = leafRoom(t.nodesize);
  if (t.root.level > 0 && (pushRight(t, path, need) || pushLeft(t, path, need))) return;
  const leaf = path.nodes[0]!;
  const slot = path.slots[0]!;
  const n = leaf.nritems;
  if (t.root.level === 0) t.growRoot(path);
  if (slot === n) {
    // appending (receive creates inodes in increasing order): the old leaf stays full
    moveToRight(path, n, splitAt(t, path, n, key));
    return;
  }
  // choose the split point closest to half that leaves room for the new item on its side
  const sizes = leaf.data.map((d) => 25 + d.length);
  let best = -1;
  let bestLeft = true;
  let bestDiff = Infinity;
  let left = 0;
  for (let m = 0; m <= n; m++) {
    if (m > 0) left += sizes[m - 1]!;
    const right = leaf.used - left;
    for (const newLeft of [true, false]) {
      if (newLeft ? slot > m : slot < m) continue;
      const l = left + (newLeft ? need : 0);
      const r = right + (newLeft ? 0 : need);
      if (l > room || r > room || (!newLeft && m === 0) || (newLeft && m === n)) continue;
      const diff = Math.abs(l - r);
      if (diff < bestDiff) {
        bestDiff = diff;
        best = m;
        bestLeft = newLeft;
      }
    }
  }
  if (best >= 0) {
    const right = splitAt(t, path, best, key);
    if (!bestLeft) moveToRight(path, best, right);
    return;
  }
  // the item fits neither half: it gets a leaf of its own between [0, slot) and [slot, n)
  splitAt(t, path, slot, key);
  if (slot > 0) moveToRight(path, slot, splitAt(t, path, slot, key));
}

/** Move items [m, nritems) of the path's leaf into a new leaf right of it; the path stays on the left. */
function splitAt(t: PathTree, path: Path, m: number, emptyKey: BtrfsKey): Block {
  const leaf = path.nodes[0]!;
  const right = t.store.create(t.rootid, 0);
  leaf.moveItemsRight(m, right);
  t.insertPtr(path, 1, path.slots[1]! + 1, right.keys[0] ?? emptyKey, right);
  return right;
}

/** Path from a leaf to `right`, its new neighbour made by splitAt(m). */
function moveToRight(path: Path, m: number, right: Block): void {
  path.slots[1] = path.slots[1]! + 1;
  path.nodes[0] = right;
  path.slots[0] = path.slots[0]! - m;
}

/** push_leaf_right: move the items from the insertion slot on into the right sibling, if that makes room. */
function pushRight(t: PathTree, path: Path, need: number): boolean {
  const parent = path.nodes[1]!;
  const pslot = path.slots[1]!;
  if (pslot + 1 >= parent.nritems) return false;
  const leaf = path.nodes[0]!;
  const slot = path.slots[0]!;
  const room = leafRoom(t.nodesize);
  const sib = t.child(parent, pslot + 1);
  let moved = 0;
  let from = leaf.nritems;
  while (from > slot && sib.used + moved + 25 + leaf.data[from - 1]!.length <= room) {
    moved += 25 + leaf.data[from - 1]!.length;
    from--;
  }
  if (leaf.used - moved + need > room) return false;
  const right = t.writableChild(parent, pslot + 1);
  leaf.moveItemsRight(from, right);
  parent.keys[pslot + 1] = right.keys[0]!;
  return true;
}

/** push_leaf_left: move the items before the insertion slot into the left sibling, if that makes room. */
function pushLeft(t: PathTree, path: Path, need: number): boolean {
  const parent = path.nodes[1]!;
  const pslot = path.slots[1]!;
  if (pslot === 0) return false;
  const leaf = path.nodes[0]!;
  const slot = path.slots[0]!;
  const room = leafRoom(t.nodesize);
  const sib = t.child(parent, pslot - 1);
  let moved = 0;
  let count = 0;
  while (count < slot && sib.used + moved + 25 + leaf.data[count]!.length <= room) {
    moved += 25 + leaf.data[count]!.length;
    count++;
  }
  if (count === 0 || leaf.used - moved + need > room) return false;
  const left = t.writableChild(parent, pslot - 1);
  leaf.moveItemsLeft(count, left);
  path.slots[0] = slot - count;
  if (leaf.nritems > 0) fixupLowKeys(path, 1, leaf.keys[0]!, t.root.level);
  return true;
}

/**
 * After a delete made the block at `level` empty or underfull: an empty block leaves its parent (a
 * chain of single-child nodes above it with it), an underfull one merges with a sibling when both fit
 * in one block, a root node left with one child is replaced by that child. Walks up as parents shrink.
 */
export function rebalance(t: PathTree, path: Path, level: number): void {
  for (;;) {
    const b = path.nodes[level]!;
    if (level === t.root.level) {
      collapseRoot(t, b);
      return;
    }
    if (b.nritems === 0) {
      let k = level + 1;
      while (k <= t.root.level && path.nodes[k]!.nritems === 1) k++;
      if (k > t.root.level) {
        // nothing else in the tree: the empty leaf becomes the root
        for (let l = t.root.level; l > level; l--) t.store.free(path.nodes[l]!, t.rootid);
        t.setRoot(b);
        return;
      }
      for (let l = level; l < k; l++) t.store.free(path.nodes[l]!, t.rootid);
      const node = path.nodes[k]!;
      const slot = path.slots[k]!;
      node.removePtr(slot);
      if (slot === 0) fixupLowKeys(path, k + 1, node.keys[0]!, t.root.level);
      level = k;
      continue;
    }
    const underfull = level === 0 ? b.used < leafRoom(t.nodesize) / 3 : b.nritems < nodePtrs(t.nodesize) / 4;
    if (!underfull) return;
    const parent = path.nodes[level + 1]!;
    const pslot = path.slots[level + 1]!;
    const fits = (a: Block, c: Block): boolean =>
      level === 0 ? a.used + c.used <= leafRoom(t.nodesize) : a.nritems + c.nritems <= nodePtrs(t.nodesize);
    if (pslot > 0 && fits(t.child(parent, pslot - 1), b)) {
      const left = t.writableChild(parent, pslot - 1);
      if (level === 0) b.moveItemsLeft(b.nritems, left);
      else b.movePtrsLeft(left);
      parent.removePtr(pslot);
      t.store.free(b, t.rootid);
    } else if (pslot + 1 < parent.nritems && fits(b, t.child(parent, pslot + 1))) {
      const right = t.writableChild(parent, pslot + 1);
      if (level === 0) right.moveItemsLeft(right.nritems, b);
      else right.movePtrsLeft(b);
      parent.removePtr(pslot + 1);
      t.store.free(right, t.rootid);
    } else {
      return;
    }
    level++;
  }
}

/** A root node with a single child hands the root over to that child (copied into this transaction). */
function collapseRoot(t: PathTree, root: Block): void {
  let b = root;
  while (b.level > 0 && b.nritems === 1) {
    const child = t.writableChild(b, 0);
    t.store.free(b, t.rootid);
    t.setRoot(child);
    b = child;
  }
}
