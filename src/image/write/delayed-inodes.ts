import { BTRFS_INODE_ITEM_KEY } from '../structs/constants.js';
import { type BtrfsInodeItem, type BtrfsKey, compareKeys, decodeInodeItem, encodeInodeItem } from '../structs/fs-items.js';

/**
 * The kernel's delayed inodes (fs/btrfs/delayed-inode.c) for one tree: INODE_ITEMs decoded once and
 * kept, changes to them kept in memory and written into the tree once, not per change. A received file
 * has its inode item changed 4–5 times in a row (create, link, write, chown, chmod, utimes); each used
 * to be a search, a decode, an encode and a leaf edit.
 *
 * The tree must never show a stale item: the tree handle (tree-state.ts) writes a pending item out
 * before anything reads it through the tree (a get of its key, a range holding its key), forgets it
 * when its key is put or deleted directly, and the commit and snapshots write every pending item first.
 * An item is only ever pending for a key the tree holds (an inode is created by a put).
 */
const MAX_DIRTY = 64;
const MAX_CACHED = 1024;

/** What the cache needs of its tree: plain get and put of one item. */
export interface InodeItemStore {
  getItem(key: BtrfsKey): Uint8Array | undefined;
  putItem(key: BtrfsKey, data: Uint8Array): void;
}

const inodeKey = (ino: bigint): BtrfsKey => ({ objectid: ino, type: BTRFS_INODE_ITEM_KEY, offset: 0n });

/** A kept item and whether it is newer than the tree's (then its number is in `dirty` too). */
interface Kept {
  item: BtrfsInodeItem;
  dirty: boolean;
}

export class DelayedInodes {
  /**
   * Decoded items by inode number, oldest first (clean ones match the tree). The dirty flag beside each
   * saves the lookups in `dirty` a change would make: a set is one hash lookup of a bigint key, not three.
   */
  private readonly items = new Map<bigint, Kept>();
  /** Inodes whose item in `items` is newer than the tree's, oldest change first. */
  private readonly dirty = new Set<bigint>();

  /** `onDirty`: called when a change is kept while none was (the tree has something for the commit to write). */
  constructor(private readonly store: InodeItemStore, private readonly onDirty?: () => void) {}

  get pending(): number {
    return this.dirty.size;
  }

  /** The inode's item (pending or read from the tree), undefined when the tree has none. */
  get(ino: bigint): BtrfsInodeItem | undefined {
    const hit = this.kept(ino);
    if (hit) return hit.item;
    const raw = this.store.getItem(inodeKey(ino));
    if (!raw) return undefined;
    const item = decodeInodeItem(raw);
    this.remember(ino, { item, dirty: false });
    return item;
  }

  /** A changed item of an inode whose key the tree holds: written later (writeOut, or when read). */
  set(ino: bigint, item: BtrfsInodeItem): void {
    let kept = this.kept(ino);
    if (kept) kept.item = item;
    else this.remember(ino, (kept = { item, dirty: false }));
    // the set keeps the order of first unwritten change: past MAX_DIRTY the oldest is written
    if (!kept.dirty) {
      kept.dirty = true;
      if (this.dirty.size === 0) this.onDirty?.();
      this.dirty.add(ino);
      if (this.dirty.size > MAX_DIRTY) this.writeOne(this.dirty.values().next().value as bigint);
    }
  }

  /** The tree's item of `ino` changes or goes by other means: whatever is kept for it is void. */
  forget(ino: bigint): void {
    this.dirty.delete(ino);
    this.items.delete(ino);
    if (ino === this.lastIno) this.lastIno = undefined;
  }

  /** Write the pending item of `ino`, if any (before its key is read through the tree). */
  writeOne(ino: bigint): void {
    if (!this.dirty.delete(ino)) return;
    const kept = this.kept(ino)!;
    kept.dirty = false;
    this.store.putItem(inodeKey(ino), encodeInodeItem(kept.item));
  }

  /** Write the pending items whose keys lie in [min, max] (before a walk over that range). */
  writeIn(min: BtrfsKey, max: BtrfsKey): void {
    if (this.dirty.size === 0) return;
    if (min.objectid === max.objectid) {
      // one object's items (the common walk): only its own inode item can lie in range
      const ino = min.objectid;
      if (this.dirty.has(ino) && inRange(inodeKey(ino), min, max)) this.writeOne(ino);
      return;
    }
    for (const ino of [...this.dirty]) if (inRange(inodeKey(ino), min, max)) this.writeOne(ino);
  }

  /** Write every pending item (commit, snapshot). */
  writeAll(): void {
    if (this.dirty.size === 0) return;
    for (const ino of [...this.dirty].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) this.writeOne(ino);
  }

  /** Drop everything kept (the tree was replaced); pending changes must have been written or be void. */
  clear(): void {
    this.items.clear();
    this.dirty.clear();
    this.lastIno = undefined;
  }

  /**
   * The last inode looked up: a received file's item is read and changed 8–10 times in a row (create,
   * link, each extent's nbytes, chown, chmod, utimes), each a hash of a bigint key in `items` otherwise.
   */
  private lastIno: bigint | undefined = undefined;
  private lastKept: Kept | undefined = undefined;

  private kept(ino: bigint): Kept | undefined {
    if (ino === this.lastIno) return this.lastKept;
    const k = this.items.get(ino);
    if (k) {
      this.lastIno = ino;
      this.lastKept = k;
    }
    return k;
  }

  private remember(ino: bigint, kept: Kept): void {
    this.items.set(ino, kept);
    this.lastIno = ino;
    this.lastKept = kept;
    if (this.items.size <= MAX_CACHED) return;
    // the oldest kept item leaves (written first when it is pending)
    const old = this.items.keys().next().value as bigint;
    this.writeOne(old);
    this.items.delete(old);
    if (old === this.lastIno) this.lastIno = undefined;
  }
}

function inRange(k: BtrfsKey, min: BtrfsKey, max: BtrfsKey): boolean {
  return compareKeys(k, min) >= 0 && compareKeys(k, max) <= 0;
}
