import { ImageError } from '../../errors.js';
import { buildTree, dropTree } from '../engine/bulk.js';
import { BTree } from '../engine/ctree.js';
import { type Item, ItemMap, type Key } from './item-map.js';

/**
 * One tree of the writer's model and the handle callers change it through. Filesystem-wide trees are
 * item maps laid out whole by the commit; subvolume trees are copy-on-write trees (engine/) changed in
 * place, block by block.
 */
export interface TreeBlockRef {
  bytenr: bigint;
  level: number;
  /** Transid the block was written in, when older than its tree's root (kept trees of an opened image). */
  generation?: bigint;
}

export interface CommittedTree {
  bytenr: bigint;
  level: number;
  generation: bigint;
  blocks: TreeBlockRef[];
}

export class TreeState {
  private map: ItemMap | undefined;
  private readonly loader: (() => ItemMap) | undefined;
  private eng: BTree | undefined;
  private engineMaker: (() => BTree) | undefined;

  /**
   * `items` may be a loader: a committed tree is then read on first use, or never when nobody asks.
   * A `BTree` (or a function making one on first use) makes it a copy-on-write tree: changed in place
   * on disk, block by block, never laid out whole by the commit.
   */
  constructor(
    readonly rootid: bigint,
    items: ItemMap | (() => ItemMap) | BTree | { engine: () => BTree },
    public dirty: boolean,
    /** Where the tree lives in the last committed state; absent for trees created since. */
    public committed?: CommittedTree,
  ) {
    if (items instanceof ItemMap) this.map = items;
    else if (items instanceof BTree) this.eng = items;
    else if (typeof items === 'function') this.loader = items;
    else this.engineMaker = items.engine;
  }

  get items(): ItemMap {
    if (this.isEngine) throw new ImageError('IMAGE_INTERNAL', `tree ${this.rootid} is a copy-on-write tree, not an item map`);
    return (this.map ??= this.loader!());
  }

  /** The copy-on-write tree, for trees kept that way (subvolume trees). */
  get engine(): BTree | undefined {
    if (!this.eng && this.engineMaker) {
      this.eng = this.engineMaker();
      this.engineMaker = undefined;
    }
    return this.eng;
  }

  set engine(t: BTree) {
    this.eng = t;
    this.engineMaker = undefined;
  }

  get isEngine(): boolean {
    return this.eng !== undefined || this.engineMaker !== undefined;
  }

  /** Whether the tree's items were ever read (a copy-on-write tree: whether any block was). */
  get loaded(): boolean {
    return this.map !== undefined || (this.eng?.used ?? false);
  }
}

/**
 * Mutating view of one tree. Item-map trees are marked for rewriting at the next commit; copy-on-write
 * trees change only the blocks on the path to the key.
 */
export class TreeHandle {
  constructor(private readonly state: TreeState) {}
  get rootid(): bigint {
    return this.state.rootid;
  }
  get size(): number {
    const e = this.state.engine;
    if (!e) return this.state.items.size;
    let n = 0;
    for (const _ of e.entries()) n++;
    return n;
  }
  get(key: Key): Uint8Array | undefined {
    const e = this.state.engine;
    return e ? e.get(key) : this.state.items.get(key);
  }
  put(key: Key, data: Uint8Array): void {
    const e = this.state.engine;
    if (e) {
      e.store.depth++;
      try {
        e.put(key, data);
      } finally {
        e.store.depth--;
      }
      e.store.trim();
      return;
    }
    this.state.items.put(key, data);
    this.state.dirty = true;
  }
  delete(key: Key): boolean {
    const e = this.state.engine;
    if (e) {
      e.store.depth++;
      let had: boolean;
      try {
        had = e.delete(key);
      } finally {
        e.store.depth--;
      }
      e.store.trim();
      return had;
    }
    const had = this.state.items.delete(key);
    if (had) this.state.dirty = true;
    return had;
  }
  /** Replace every item of this tree with a copy of `src`'s items. */
  copyItemsFrom(src: TreeHandle): void {
    const e = this.state.engine;
    if (e) {
      dropTree(e);
      this.state.engine = buildTree(e.store, this.state.rootid, src.entries());
      e.store.trim();
      return;
    }
    this.state.items.copyFrom(src.state.items);
    this.state.dirty = true;
  }
  range(min?: Key, max?: Key): Item[] {
    const e = this.state.engine;
    return e ? [...e.entries(min, max)] : this.state.items.range(min, max);
  }
  first(min?: Key, max?: Key): Item | undefined {
    const e = this.state.engine;
    return e ? e.first(min, max) : this.state.items.first(min, max);
  }
  last(max?: Key, min?: Key): Item | undefined {
    const e = this.state.engine;
    return e ? e.last(max, min) : this.state.items.last(max, min);
  }
  /** Items in key order without building an array; the tree may change meanwhile (see ItemMap.entries). */
  entries(min?: Key, max?: Key): IterableIterator<Item> {
    const e = this.state.engine;
    return e ? e.entries(min, max) : this.state.items.entries(min, max);
  }
}
