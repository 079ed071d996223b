import { type BtrfsKey, compareKeys } from '../structs/fs-items.js';
import { binarySearch } from './block.js';
import type { Path } from './path.js';
import type { BlockStore } from './store.js';

/** Paths kept per tree. */
const MAX_HINTS = 4;

/**
 * Paths of a tree's last searches, for as long as no block was made, copied, freed or dropped since
 * (store.shape): the keys of the nodes on such a path bound the range the descent would lead to its
 * leaf — at least the key its parent holds for it, below the next key at the lowest level that has
 * one — so a key in that range is a binary search in that leaf. Receive works on a few leaves at a
 * time (the directory's, the inode's, appends at the end), each 3–4 levels of lookups before.
 */
export class SearchHints {
  private hints: Path[] = [];
  private shape = -1;

  constructor(private readonly store: BlockStore) {}

  /**
   * The path to `key` from a remembered path that leads there, or undefined. `top` is the tree's root
   * level; with `cow` only a path wholly of this transaction serves (writable as it is, no copy needed).
   */
  lookup(key: BtrfsKey, top: number, cow: boolean): { path: Path; found: boolean } | undefined {
    const h = this.find(key, top, cow);
    if (h === undefined) return undefined;
    const slots = h.slots.slice();
    slots[0] = this.slot;
    return { path: { nodes: h.nodes.slice(), slots }, found: this.found };
  }

  /** After find() answered: the key's slot in the leaf of the path it gave, and whether the key is there. */
  slot = 0;
  found = false;

  /**
   * lookup() without the copy: the remembered path itself, its leaf slot and whether the key is there in
   * `slot` and `found`. Never change the path given (a lookup that only reads the leaf: BTree.get).
   */
  find(key: BtrfsKey, top: number, cow: boolean): Path | undefined {
    const store = this.store;
    if (this.shape !== store.shape) {
      if (this.hints.length) this.hints = [];
      return undefined;
    }
    const hints = this.hints;
    for (let i = 0; i < hints.length; i++) {
      const h = hints[i]!;
      if (h.nodes.length !== top + 1 || !leadsTo(h, top, key)) continue;
      if (cow) {
        for (const b of h.nodes) if (!store.isFresh(b)) return undefined;
        for (const b of h.nodes) store.touch(b);
      }
      const clock = ++store.clock;
      for (const b of h.nodes) b.lastUse = clock;
      const r = binarySearch(h.nodes[0]!.keys, key);
      this.found = r >= 0;
      this.slot = r >= 0 ? r : -1 - r;
      // most recently used first: the next lookup most often goes where this one went (a file's
      // extents, a directory's entries) and is then found by the first range check (a comp-zstd-v2
      // receive: 70k range checks instead of 93k)
      if (i > 0) {
        hints.copyWithin(1, 0, i);
        hints[0] = h;
      }
      return h;
    }
    return undefined;
  }

  /** Keeps a copy of a search's path, first (the 4 most recently used are kept). */
  remember(path: Path): void {
    if (this.shape !== this.store.shape) {
      this.hints = [];
      this.shape = this.store.shape;
    }
    if (this.hints.length === 0) this.store.holders.add(this);
    this.hints.unshift({ nodes: path.nodes.slice(), slots: path.slots.slice() });
    if (this.hints.length > MAX_HINTS) this.hints.pop();
  }

  /**
   * The paths' blocks let go (BlockStore.endTransaction, reset): stale once a transaction ends, and a
   * tree searched once and never again (each of 10,000 subvolumes received in one run) would otherwise
   * hold its last paths' decoded blocks for good, outside the store's memory bound.
   */
  release(): void {
    this.hints = [];
  }
}

/**
 * Would a descent from the root for `key` follow the node slots of path `h` down to its leaf? At each
 * level it takes the last slot whose key is <= `key` (slot 0 for smaller keys too): so `key` must not be
 * below the key of any slot > 0 on the path, and must be below the next key of the lowest level that has
 * one (every key under a slot is below that slot's next key, at every level above).
 */
function leadsTo(h: Path, top: number, key: BtrfsKey): boolean {
  for (let l = 1; l <= top; l++) if (h.slots[l]! > 0 && compareKeys(key, h.nodes[l]!.keys[h.slots[l]!]!) < 0) return false;
  for (let l = 1; l <= top; l++) {
    const node = h.nodes[l]!;
    const next = h.slots[l]! + 1;
    if (next < node.nritems) return compareKeys(key, node.keys[next]!) < 0;
  }
  return true; // the rightmost path: everything past it goes there
}
