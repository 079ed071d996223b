import { ImageError } from '../../errors.js';
import { BTree } from '../engine/ctree.js';
import type { Item, Key } from './items.js';

/**
 * One tree of the writer's model and the handle callers change it through: a copy-on-write tree
 * (engine/) changed block by block, the blocks on the path to a key copied on their first change.
 */
/** Where a tree's root was in the last committed state. */
export interface CommittedTree {
  bytenr: bigint;
  level: number;
  generation: bigint;
}

export class TreeState {
  private eng: BTree | undefined;
  private engineMaker: (() => BTree) | undefined;

  /** `tree`: the tree, or a function making it on first use (a new tree gets its root block then). */
  constructor(
    readonly rootid: bigint,
    tree: BTree | { engine: () => BTree },
    /** Where the tree lives in the last committed state; absent for trees created since. */
    public committed?: CommittedTree,
  ) {
    if (tree instanceof BTree) this.eng = tree;
    else this.engineMaker = tree.engine;
  }

  get engine(): BTree {
    if (!this.eng) {
      this.eng = this.engineMaker!();
      this.engineMaker = undefined;
    }
    return this.eng;
  }

  set engine(t: BTree) {
    this.eng = t;
    this.engineMaker = undefined;
  }

  /** Whether any block of the tree was read (or made). */
  get loaded(): boolean {
    return this.eng?.used ?? false;
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
  get(key: Key): Uint8Array | undefined {
    return this.state.engine.get(key);
  }
  put(key: Key, data: Uint8Array): void {
    const e = this.state.engine;
    e.store.depth++;
    try {
      e.put(key, data);
    } finally {
      e.store.depth--;
    }
    e.store.trim();
  }
  delete(key: Key): boolean {
    const e = this.state.engine;
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
  range(min?: Key, max?: Key): Item[] {
    return [...this.state.engine.entries(min, max)];
  }
  first(min?: Key, max?: Key): Item | undefined {
    return this.state.engine.first(min, max);
  }
  last(max?: Key, min?: Key): Item | undefined {
    return this.state.engine.last(max, min);
  }
  /** Items in key order without building an array; the tree may change meanwhile (engine entries). */
  entries(min?: Key, max?: Key): IterableIterator<Item> {
    return this.state.engine.entries(min, max);
  }
}
