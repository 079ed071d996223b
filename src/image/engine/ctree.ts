import { ImageError } from '../../errors.js';
import { BTRFS_MAX_LEVEL } from '../structs/constants.js';
import { type BtrfsKey, compareKeys } from '../structs/fs-items.js';
import { BTRFS_ITEM_SIZE } from '../structs/tree-block.js';
import { binarySearch, type Block, leafRoom, nodePtrs } from './block.js';
import { rebalance, splitLeafFor } from './balance.js';
import { fixupLowKeys, MAX_KEY, MIN_KEY, nextLeaf, type Path, type PathTree, prevLeaf } from './path.js';
import { SearchHints } from './search-hints.js';
import type { BlockStore, CowHooks } from './store.js';
import { treeBlocks, treeEntries, treeRange } from './walk.js';

/**
 * One on-disk B-tree changed in place by copy-on-write, as kernel ctree.c does it: every change goes
 * through one path from the root (btrfs_search_slot with cow), each block on it copied on its first
 * change in a transaction; full leaves are split (after trying to push items to a sibling), full nodes
 * split, emptied or underfull blocks merged with a sibling, and a root left with one child replaced by
 * that child. Blocks are read on demand through the BlockStore; nothing holds the whole tree.
 */
export interface TreeRootRef {
  bytenr: bigint;
  level: number;
  generation: bigint;
}

export class BTree implements PathTree {
  /**
   * Set when the root moved (copy-on-write, split, collapse): the owner updates the root item. The first
   * time in a transaction it calls onRootChange: the filesystem's list of the trees a commit must look at,
   * which spares it a pass over every tree (10,000 snapshots) at each commit.
   */
  get rootChanged(): boolean {
    return this.changed;
  }
  set rootChanged(v: boolean) {
    if (v && !this.changed) this.onRootChange?.();
    this.changed = v;
  }
  private changed = false;
  onRootChange: (() => void) | undefined = undefined;
  /** Set once any block of the tree has been asked for (a tree nobody uses is never read). */
  used = false;

  constructor(
    readonly store: BlockStore,
    readonly rootid: bigint,
    public root: TreeRootRef,
    hooks?: CowHooks,
  ) {
    this.hooks = hooks ?? store.hooks ?? {};
    this.hints = new SearchHints(store);
  }

  readonly hooks: CowHooks;
  /** The last searches' paths (search-hints.ts). */
  private readonly hints: SearchHints;

  /** A new tree: one empty leaf of this transaction. */
  static create(store: BlockStore, rootid: bigint, hooks?: CowHooks): BTree {
    const leaf = store.create(rootid, 0);
    const t = new BTree(store, rootid, { bytenr: leaf.bytenr, level: 0, generation: leaf.generation }, hooks);
    t.rootChanged = true;
    return t;
  }

  get nodesize(): number {
    return this.store.nodesize;
  }

  rootBlock(): Block {
    this.used = true;
    return this.store.read(this.root.bytenr, { level: this.root.level, generation: this.root.generation, owner: this.rootid });
  }

  child(node: Block, slot: number): Block {
    return this.store.read(node.ptrs[slot]!, { level: node.level - 1, generation: node.ptrGens[slot]!, firstKey: node.keys[slot]!, owner: this.rootid });
  }

  setRoot(b: Block): void {
    this.root = { bytenr: b.bytenr, level: b.level, generation: b.generation };
    this.rootChanged = true;
  }

  /**
   * btrfs_cow_block: `b` (child `slot` of `parent`, or the root) made writable in this transaction. A
   * block of this transaction is changed in place; any other is copied to a new address that replaces
   * it in its parent (or as root), and the old one is freed unless a hook says another tree still
   * references it.
   */
  makeWritable(b: Block, parent: Block | undefined, slot: number): Block {
    if (this.store.isFresh(b)) {
      this.store.touch(b);
      return b;
    }
    const copy = this.store.copy(b, this.rootid);
    this.hooks.cowed?.(this, b, copy);
    if (parent) {
      parent.ptrs[slot] = copy.bytenr;
      parent.ptrGens[slot] = copy.generation;
    } else {
      this.setRoot(copy);
    }
    this.store.free(b, this.rootid);
    return copy;
  }

  /** makeWritable for the block at `level` of a path. */
  cow(path: Path, level: number): Block {
    const top = level === this.root.level;
    const c = this.makeWritable(path.nodes[level]!, top ? undefined : path.nodes[level + 1], top ? 0 : path.slots[level + 1]!);
    path.nodes[level] = c;
    return c;
  }

  /** Child `slot` of the (writable) node `parent`, made writable too. */
  writableChild(parent: Block, slot: number): Block {
    return this.makeWritable(this.child(parent, slot), parent, slot);
  }

  /**
   * btrfs_search_slot: the path to `key` (found, or the slot it would be inserted at). With `cow`, every
   * block on the path is made writable. Node slots point at the child whose range holds the key.
   */
  search(key: BtrfsKey, cow: boolean): { path: Path; found: boolean } {
    const hit = this.hints.lookup(key, this.root.level, cow);
    if (hit) return hit;
    const path: Path = { nodes: [], slots: [] };
    let b = this.rootBlock();
    for (;;) {
      const level = b.level;
      path.nodes[level] = b;
      if (cow) b = this.cow(path, level);
      const r = binarySearch(b.keys, key);
      if (level === 0) {
        path.slots[0] = r < 0 ? -1 - r : r;
        this.hints.remember(path);
        return { path, found: r >= 0 };
      }
      // not there: the slot before where it would go (slot 0 for keys below the first)
      const slot = r >= 0 ? r : r < -1 ? -2 - r : 0;
      path.slots[level] = slot;
      b = this.child(b, slot);
      if (b.level !== level - 1) throw new ImageError('IMAGE_BAD_TREE_BLOCK', `tree ${this.rootid}: block ${b.bytenr} at level ${b.level} under level ${level}`);
    }
  }

  get(key: BtrfsKey): Uint8Array | undefined {
    // a remembered path that leads to the key answers without a copy of it (most gets: see search-hints.ts)
    const hints = this.hints;
    const h = hints.find(key, this.root.level, false);
    if (h !== undefined) return hints.found ? h.nodes[0]!.data[hints.slot] : undefined;
    const { path, found } = this.search(key, false);
    return found ? path.nodes[0]!.data[path.slots[0]!] : undefined;
  }

  /**
   * btrfs_insert_item, or the item's payload replaced when the key exists — unless `onlyNew`: then an
   * existing key is left as it is and false returned (the kernel's -EEXIST), at no extra search.
   */
  put(key: BtrfsKey, data: Uint8Array, onlyNew = false): boolean {
    const room = leafRoom(this.nodesize);
    if (BTRFS_ITEM_SIZE + data.length > room) {
      throw new ImageError('IMAGE_ITEM_TOO_BIG', `item of ${data.length} bytes does not fit a ${this.nodesize}-byte leaf (tree ${this.rootid})`);
    }
    // most puts change a leaf of a remembered path already of this transaction, where the item fits and
    // no key above it changes (not slot 0): done there, without the copy of the path search() makes
    const hints = this.hints;
    const h = hints.find(key, this.root.level, true);
    if (h !== undefined) {
      const hit = h.nodes[0]!;
      const at = hints.slot;
      if (hints.found && onlyNew) return false;
      if (hints.found ? hit.used - hit.data[at]!.length + data.length <= room : at > 0 && hit.used + BTRFS_ITEM_SIZE + data.length <= room) {
        if (hints.found) hit.setItemData(at, data);
        else hit.insertItem(at, key, data);
        return true;
      }
    }
    const { path, found } = this.search(key, true);
    let leaf = path.nodes[0]!;
    if (found) {
      if (onlyNew) return false;
      const slot = path.slots[0]!;
      if (leaf.used - leaf.data[slot]!.length + data.length <= room) {
        leaf.setItemData(slot, data);
        return true;
      }
      // grows past the leaf: take it out and insert it again through the split path
      leaf.removeItems(slot, 1);
    }
    if (leaf.used + BTRFS_ITEM_SIZE + data.length > room) {
      splitLeafFor(this, path, key, BTRFS_ITEM_SIZE + data.length);
      leaf = path.nodes[0]!;
    }
    const slot = path.slots[0]!;
    leaf.insertItem(slot, key, data);
    if (slot === 0) fixupLowKeys(path, 1, key, this.root.level);
    return true;
  }

  /** btrfs_del_item: returns whether the key was there. */
  delete(key: BtrfsKey): boolean {
    const probe = this.search(key, false);
    if (!probe.found) return false;
    // a path already of this transaction is writable as it is; otherwise copy it on the way down again
    let path = probe.path;
    if (path.nodes.every((b) => this.store.isFresh(b))) for (const b of path.nodes) this.store.touch(b);
    else path = this.search(key, true).path;
    const leaf = path.nodes[0]!;
    const slot = path.slots[0]!;
    leaf.removeItems(slot, 1);
    if (slot === 0 && leaf.nritems > 0) fixupLowKeys(path, 1, leaf.keys[0]!, this.root.level);
    rebalance(this, path, 0);
    return true;
  }

  /**
   * Insert a pointer to `child` at `slot` (>= 1: new blocks always go right of an existing one) of the
   * node at `level` on the path, splitting the node in half when it is full. The path keeps pointing
   * at the block it pointed at (path.nodes[level - 1] under path.slots[level]).
   */
  insertPtr(path: Path, level: number, slot: number, key: BtrfsKey, child: Block): void {
    if (slot < 1) throw new ImageError('IMAGE_INTERNAL', 'key pointer inserted at slot 0');
    let node = path.nodes[level]!;
    if (node.nritems >= nodePtrs(this.nodesize)) {
      if (level === this.root.level) this.growRoot(path);
      const mid = node.nritems >> 1;
      const right = this.store.create(this.rootid, level);
      node.movePtrsRight(mid, right);
      // node and right stay side by side in one parent, whatever the parent's own split does
      this.insertPtr(path, level + 1, path.slots[level + 1]! + 1, right.keys[0]!, right);
      const onRight = path.slots[level]! >= mid;
      if (onRight) {
        path.nodes[level] = right;
        path.slots[level] = path.slots[level]! - mid;
        path.slots[level + 1] = path.slots[level + 1]! + 1;
      }
      if (slot > mid) {
        slot -= mid;
        node = right;
      }
      node.insertPtr(slot, key, child.bytenr, child.generation);
      if (path.nodes[level] === node && path.slots[level]! >= slot) path.slots[level] = path.slots[level]! + 1;
      return;
    }
    node.insertPtr(slot, key, child.bytenr, child.generation);
    if (path.slots[level]! >= slot) path.slots[level] = path.slots[level]! + 1;
  }

  /** insert_new_root: a node one level up whose only child is the current root. */
  growRoot(path: Path): void {
    const old = path.nodes[this.root.level]!;
    if (old.level + 1 >= BTRFS_MAX_LEVEL) throw new ImageError('IMAGE_TREE_TOO_DEEP', `tree ${this.rootid} would exceed ${BTRFS_MAX_LEVEL} levels`);
    const top = this.store.create(this.rootid, old.level + 1);
    top.insertPtr(0, old.keys[0] ?? { objectid: 0n, type: 0, offset: 0n }, old.bytenr, old.generation);
    path.nodes[top.level] = top;
    path.slots[top.level] = 0;
    this.setRoot(top);
  }

  // ---- reading ----

  /** First item with min <= key <= max (one search, no copy of the leaf). */
  first(min?: BtrfsKey, max?: BtrfsKey): { key: BtrfsKey; data: Uint8Array } | undefined {
    // as in get(): a remembered path whose leaf holds the answer gives it without a copy of the path
    const h = this.hints.find(min ?? MIN_KEY, this.root.level, false);
    if (h !== undefined && this.hints.slot < h.nodes[0]!.nritems) return bounded(h.nodes[0]!, this.hints.slot, max, 1);
    const { path } = this.search(min ?? MIN_KEY, false);
    if (path.slots[0]! >= path.nodes[0]!.nritems && !nextLeaf(this, path)) return undefined;
    const leaf = path.nodes[0]!;
    const key = leaf.keys[path.slots[0]!]!;
    if (max && compareKeys(key, max) > 0) return undefined;
    return { key, data: leaf.data[path.slots[0]!]! };
  }

  /** Last item with min <= key <= max. */
  last(max?: BtrfsKey, min?: BtrfsKey): { key: BtrfsKey; data: Uint8Array } | undefined {
    const hints = this.hints;
    const h = hints.find(max ?? MAX_KEY, this.root.level, false);
    if (h !== undefined && (hints.found || hints.slot > 0)) return bounded(h.nodes[0]!, hints.found ? hints.slot : hints.slot - 1, min, -1);
    const { path, found } = this.search(max ?? MAX_KEY, false);
    if (!found) path.slots[0] = path.slots[0]! - 1;
    if (path.slots[0]! < 0 && !prevLeaf(this, path)) return undefined;
    const leaf = path.nodes[0]!;
    const slot = path.slots[0]!;
    const key = leaf.keys[slot]!;
    if (min && compareKeys(key, min) < 0) return undefined;
    return { key, data: leaf.data[slot]! };
  }

  /** Items with min <= key <= max in key order, one leaf at a time (walk.ts: the tree may change meanwhile). */
  entries(min?: BtrfsKey, max?: BtrfsKey): Generator<{ key: BtrfsKey; data: Uint8Array }> {
    return treeEntries(this, min, max);
  }

  /** Items with min <= key <= max in key order, taken at once (walk.ts). */
  range(min: BtrfsKey, max: BtrfsKey): { key: BtrfsKey; data: Uint8Array }[] {
    return treeRange(this, min, max);
  }

  /** Every block of the tree, top down (for checks and tests; reads every node). */
  blocks(): Generator<Block> {
    return treeBlocks(this);
  }
}

/** Item `slot` of `leaf` unless its key lies past `bound` (above it for side 1, below it for side -1). */
function bounded(leaf: Block, slot: number, bound: BtrfsKey | undefined, side: 1 | -1): { key: BtrfsKey; data: Uint8Array } | undefined {
  const key = leaf.keys[slot]!;
  if (bound && compareKeys(key, bound) * side > 0) return undefined;
  return { key, data: leaf.data[slot]! };
}
