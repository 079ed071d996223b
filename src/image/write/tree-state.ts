import { BTree } from '../engine/ctree.js';
import { MAX_KEY, MIN_KEY } from '../engine/path.js';
import { U64_MAX, BTRFS_DIR_INDEX_KEY, BTRFS_DIR_ITEM_KEY, BTRFS_INODE_ITEM_KEY } from '../structs/constants.js';
import { BTRFS_INODE_ITEM_SIZE, type BtrfsDirItem, type BtrfsInodeItem, encodeDirItems } from '../structs/fs-items.js';
import { DelayedInodes } from './delayed-inodes.js';
import { DirCache } from './dir-cache.js';
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

/**
 * What a tree tells the filesystem holding it: that it has something for the next commit (its root
 * moved, an inode item is pending), and that it keeps decoded items (caches a commit lets go).
 */
export interface TreeOwner {
  touched(t: TreeState): void;
  cached(t: TreeState): void;
}

export class TreeState {
  private eng: BTree | undefined;
  private engineMaker: (() => BTree) | undefined;
  // The three below are made on first use: an image of 10,000 snapshots registers 10,000 trees at open,
  // and a receive uses two or three of them (their ten objects each were most of a small receive's
  // garbage collection there).
  private inodesOf: DelayedInodes | undefined;
  private handleOf: TreeHandle | undefined;
  private dirsOf: DirCache | undefined;

  /** Inode items kept decoded, changes written once (delayed-inodes.ts). */
  get inodes(): DelayedInodes {
    if (!this.inodesOf) {
      this.inodesOf = new DelayedInodes({
        getItem: (key) => this.engine.get(key),
        putItem: (key, data) => putThrough(this.engine, key, data),
      }, () => this.owner?.touched(this));
      this.owner?.cached(this);
    }
    return this.inodesOf;
  }

  /** The handle callers change the tree through (one per tree: it holds nothing else). */
  get handle(): TreeHandle {
    return (this.handleOf ??= new TreeHandle(this));
  }

  /** Directory entries kept decoded for lookups by name, next DIR_INDEX per directory (dir-cache.ts). */
  get dirs(): DirCache {
    if (!this.dirsOf) {
      this.dirsOf = new DirCache(
        (dir, hash) => this.engine.get({ objectid: dir, type: BTRFS_DIR_ITEM_KEY, offset: hash }),
        (dir) => this.engine.last({ objectid: dir, type: BTRFS_DIR_INDEX_KEY, offset: U64_MAX }, { objectid: dir, type: BTRFS_DIR_INDEX_KEY, offset: 0n })?.key.offset,
      );
      this.owner?.cached(this);
    }
    return this.dirsOf;
  }

  /** The caches as they are, none made: for what only keeps them up to date (a put, a delete, a walk). */
  get keptInodes(): DelayedInodes | undefined {
    return this.inodesOf;
  }
  get keptDirs(): DirCache | undefined {
    return this.dirsOf;
  }

  /**
   * Let go of the decoded items kept (after a commit): each cache is bounded, but per tree, and a run
   * that receives a year of daily streams goes through 365 trees. Made again on first use.
   */
  dropCaches(): void {
    if (!this.inodesOf?.pending) this.inodesOf = undefined;
    this.dirsOf = undefined;
  }

  /**
   * `tree`: the tree, or a function making it on first use (a new tree gets its root block then; an
   * opened one is not even set up until used: an image of 10,000 snapshots opens 10,000 of them).
   * `owner`: told when the tree gets something for the next commit (its root moved, an inode item is
   * pending) — the filesystem's list of trees the commit looks at — and when it starts keeping items.
   */
  constructor(
    readonly rootid: bigint,
    tree: BTree | { engine: () => BTree },
    /** Where the tree lives in the last committed state; absent for trees created since. */
    public committed?: CommittedTree,
    private readonly owner?: TreeOwner,
  ) {
    if (tree instanceof BTree) this.attach(tree);
    else this.engineMaker = tree.engine;
  }

  get engine(): BTree {
    if (!this.eng) {
      this.attach(this.engineMaker!());
      this.engineMaker = undefined;
    }
    return this.eng!;
  }

  private attach(t: BTree): void {
    this.eng = t;
    const owner = this.owner;
    if (!owner) return;
    t.onRootChange = () => owner.touched(this);
    if (t.rootChanged) owner.touched(this);
  }

  /** A new tree in this one's place (a snapshot's copy of its source): nothing kept of the old one holds. */
  set engine(t: BTree) {
    this.attach(t);
    this.engineMaker = undefined;
    this.inodesOf?.clear();
    this.dirsOf?.clear();
  }

  /** Pending inode items into the tree (commit, snapshot). */
  writeInodes(): void {
    this.inodesOf?.writeAll();
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
    if (key.type === BTRFS_INODE_ITEM_KEY) this.state.keptInodes?.writeOne(key.objectid);
    return this.state.engine.get(key);
  }
  put(key: Key, data: Uint8Array): void {
    this.forget(key, true);
    putThrough(this.state.engine, key, data);
    if (key.type === BTRFS_DIR_INDEX_KEY) this.state.keptDirs?.indexPut(key.objectid, key.offset);
  }
  /** Adds an item whose key must be new: false, and nothing changed, when the tree has it already. */
  insert(key: Key, data: Uint8Array): boolean {
    if (key.type === BTRFS_INODE_ITEM_KEY || key.type === BTRFS_DIR_ITEM_KEY || key.type === BTRFS_DIR_INDEX_KEY) {
      // those are kept decoded or pending beside the tree: their puts go through put()
      throw new Error(`TreeHandle.insert is not for item type ${key.type}`);
    }
    return putThrough(this.state.engine, key, data, true);
  }
  delete(key: Key): boolean {
    this.forget(key, false);
    if (key.type === BTRFS_DIR_INDEX_KEY) this.state.keptDirs?.indexDeleted(key.objectid, key.offset);
    const e = this.state.engine;
    return held(e, () => e.delete(key));
  }
  range(min?: Key, max?: Key): Item[] {
    this.state.keptInodes?.writeIn(min ?? MIN_KEY, max ?? MAX_KEY);
    return this.state.engine.range(min ?? MIN_KEY, max ?? MAX_KEY);
  }
  first(min?: Key, max?: Key): Item | undefined {
    this.state.keptInodes?.writeIn(min ?? MIN_KEY, max ?? MAX_KEY);
    return this.state.engine.first(min, max);
  }
  last(max?: Key, min?: Key): Item | undefined {
    this.state.keptInodes?.writeIn(min ?? MIN_KEY, max ?? MAX_KEY);
    return this.state.engine.last(max, min);
  }
  /** The last key in [min, max]: keys of pending inode items are in the tree already, nothing is written. */
  lastKey(max?: Key, min?: Key): Key | undefined {
    return this.state.engine.last(max, min)?.key;
  }
  /**
   * Items in key order without building an array; the tree may change meanwhile (engine entries).
   * Pending inode items in the range are written first; ones changed during the walk may show their
   * older payload (as any item changed during a walk may).
   */
  entries(min?: Key, max?: Key): IterableIterator<Item> {
    this.state.keptInodes?.writeIn(min ?? MIN_KEY, max ?? MAX_KEY);
    return this.state.engine.entries(min, max);
  }

  /** What is kept decoded of `key` is void: the item is put (`present`) or deleted. */
  private forget(key: Key, present: boolean): void {
    if (key.type === BTRFS_INODE_ITEM_KEY) this.state.keptInodes?.forget(key.objectid);
    else if (key.type === BTRFS_DIR_ITEM_KEY) {
      const dirs = this.state.keptDirs;
      dirs?.forget(key.objectid, key.offset);
      dirs?.itemChanged(key.objectid, key.offset, present);
    }
  }

  /** The entries of DIR_ITEM (dir, hash), null when there is none (kept decoded; never change them). */
  dirItem(dir: bigint, hash: bigint): BtrfsDirItem[] | null {
    return this.state.dirs.get(dir, hash);
  }
  /** Put DIR_ITEM (dir, hash) holding `items` (delete it for none), keeping them decoded for lookups. */
  setDirItem(dir: bigint, hash: bigint, items: BtrfsDirItem[]): void {
    const key = { objectid: dir, type: BTRFS_DIR_ITEM_KEY, offset: hash };
    if (items.length) this.put(key, encodeDirItems(items));
    else this.delete(key);
    this.state.dirs.set(dir, hash, items.length ? items : null);
  }
  /**
   * `dir` is a directory inode just made whose number no item of the tree had (past the highest objectid,
   * or a new tree's first): lookups of names it does not hold need no search from here on.
   */
  madeDir(dir: bigint): void {
    this.state.dirs.madeDir(dir);
  }
  /** The DIR_INDEX a new entry of directory `dir` gets (the highest in use + 1, at least 2). */
  nextDirIndex(dir: bigint): bigint {
    return this.state.dirs.indexFor(dir);
  }

  // ---- inode items, through the delayed-inode cache ----

  /** The inode item of `ino` as it is now (pending changes included). */
  inode(ino: bigint): BtrfsInodeItem | undefined {
    return this.state.inodes.get(ino);
  }
  /**
   * A new inode's item: its key goes into the tree now (the delayed-inode cache holds only keys the tree
   * has), with a placeholder payload of the item's size, and the item itself is pending like any change
   * — it is changed 4–5 times more right after (link, write, chown, chmod, utimes) and encoded once, when
   * it is written over the placeholder in place. Nothing reads the tree's payload before: every read
   * through the handle, the commit and snapshots write pending items first.
   */
  putInode(ino: bigint, item: BtrfsInodeItem): void {
    this.put({ objectid: ino, type: BTRFS_INODE_ITEM_KEY, offset: 0n }, NEW_INODE_PLACEHOLDER);
    this.state.inodes.set(ino, item);
  }
  /** A new item for an existing inode, written to the tree later (before any read of it through the tree). */
  setInode(ino: bigint, item: BtrfsInodeItem): void {
    this.state.inodes.set(ino, item);
  }
  /** Write every pending inode item of this tree. */
  writeInodes(): void {
    this.state.writeInodes();
  }
}

/** What the tree holds for a new inode until its pending item is written (payloads are never changed in place). */
const NEW_INODE_PLACEHOLDER = new Uint8Array(BTRFS_INODE_ITEM_SIZE);

/**
 * A put with the block cache held (paths keep blocks) and trimmed after: held() written out, without a
 * closure per item put (puts are most of a receive's tree changes).
 */
function putThrough(e: BTree, key: Key, data: Uint8Array, onlyNew = false): boolean {
  e.store.depth++;
  let done: boolean;
  try {
    done = e.put(key, data, onlyNew);
  } finally {
    e.store.depth--;
  }
  e.store.trim();
  return done;
}

/** Runs a change of `e` with its block cache held (the change's path keeps blocks), then trims the cache. */
function held<T>(e: BTree, change: () => T): T {
  e.store.depth++;
  let result: T;
  try {
    result = change();
  } finally {
    e.store.depth--;
  }
  e.store.trim();
  return result;
}
