import { type BtrfsDirItem, decodeDirItems } from '../structs/fs-items.js';

/**
 * What lookups and links in the directories of one tree keep between commands:
 * - decoded DIR_ITEMs (the kernel's dcache, for lookups by name): a receive resolves the same path for
 *   every command on a file (write, chown, chmod, utimes...), each a search and a decode per component
 *   before. Kept by item key (directory, name hash), absent ones too.
 * - each directory's next DIR_INDEX (the kernel's index_cnt): the last DIR_INDEX + 1, found by a search
 *   per link before.
 * The tree handle (tree-state.ts) tells of every DIR_ITEM and DIR_INDEX key it puts or deletes and a tree
 * replaced whole drops everything, so nothing kept ever answers for an item the tree no longer holds.
 */
const MAX_KEPT = 4096;
/** Name hashes kept for the directories made in this run (`made`), all of them together. */
const MAX_MADE_HASHES = 1 << 17;

export class DirCache {
  /** directory → name hash (a number: hashes are 32-bit) → its entries (null: no such item). */
  private readonly dirs = new Map<bigint, Map<number, BtrfsDirItem[] | null>>();
  private kept = 0;
  /**
   * The directory asked for last and what `dirs`, `made` and `nextIndex` hold for it (undefined: nothing
   * yet), updated with them: a link asks 8–10 times for the same directory, each a bigint-keyed lookup.
   */
  private lastDir: bigint | undefined = undefined;
  private lastItems: Map<number, BtrfsDirItem[] | null> | undefined = undefined;
  private lastMade: Set<number> | undefined = undefined;
  private lastNext: bigint | undefined = undefined;

  /**
   * Directories made since this cache started (a new inode number, past every objectid in the tree, so no
   * item of theirs predates it) → the name hashes of their DIR_ITEMs: a lookup of a name that is not
   * there needs no search. A receive looks each new file's name up twice before linking it (the orphan
   * name in the top directory, then its final name), both absent, both a search from the root before:
   * DIR_ITEM keys are spread by hash, so no recent path leads there.
   */
  private readonly made = new Map<bigint, Set<number>>();
  private madeHashes = 0;

  /** directory → its last DIR_INDEX + 1 (2 when it has none), as the tree holds them. */
  private readonly nextIndex = new Map<bigint, bigint>();

  constructor(
    private readonly read: (dir: bigint, hash: bigint) => Uint8Array | undefined,
    private readonly lastIndex: (dir: bigint) => bigint | undefined,
  ) {}

  /** The DIR_INDEX a new entry of `dir` gets (the highest in use + 1, at least 2). */
  indexFor(dir: bigint): bigint {
    this.at(dir);
    let next = this.lastNext;
    if (next === undefined) {
      const last = this.lastIndex(dir);
      next = last === undefined ? 2n : last + 1n;
      if (this.nextIndex.size >= MAX_KEPT) this.nextIndex.clear();
      this.nextIndex.set(dir, next);
      this.lastNext = next;
    }
    return next;
  }

  /** DIR_INDEX (dir, index) is put: the highest index follows. */
  indexPut(dir: bigint, index: bigint): void {
    this.at(dir);
    const next = this.lastNext;
    if (next !== undefined && index >= next) this.nextIndex.set(dir, (this.lastNext = index + 1n));
  }

  /** DIR_INDEX (dir, index) is deleted: when it was the highest, the next is found again by a search. */
  indexDeleted(dir: bigint, index: bigint): void {
    this.at(dir);
    if (this.lastNext === index + 1n) {
      this.nextIndex.delete(dir);
      this.lastNext = undefined;
    }
  }

  /** The entries of item (dir, DIR_ITEM, hash): never change the array returned. */
  get(dir: bigint, hash: bigint): BtrfsDirItem[] | null {
    this.at(dir);
    const h = Number(hash);
    const hit = this.lastItems?.get(h);
    if (hit !== undefined) return hit;
    const made = this.lastMade;
    if (made !== undefined && !made.has(h | 0)) return null;
    const raw = this.read(dir, hash);
    const items = raw ? decodeDirItems(raw) : null;
    this.set(dir, hash, items);
    return items;
  }

  /** The item (dir, DIR_ITEM, hash) is being put or deleted. */
  forget(dir: bigint, hash: bigint): void {
    this.at(dir);
    if (this.lastItems?.delete(Number(hash))) this.kept--;
  }

  /** `dir` is a new directory: it has no entries, and every one it gets is put through this cache's tree handle. */
  madeDir(dir: bigint): void {
    // a number given again (the highest inode went away): the old directory's names went with it
    const old = this.made.get(dir);
    if (old) this.madeHashes -= old.size;
    const made = new Set<number>();
    this.made.set(dir, made);
    if (dir === this.lastDir) this.lastMade = made;
  }

  /** The item (dir, DIR_ITEM, hash) is put (`present`) or deleted. */
  itemChanged(dir: bigint, hash: bigint, present: boolean): void {
    this.at(dir);
    const made = this.lastMade;
    if (made === undefined) return;
    const h = Number(hash) | 0;
    if (!present) {
      if (made.delete(h)) this.madeHashes--;
      return;
    }
    if (made.has(h)) return;
    // bounded memory: past the limit nothing is known to be absent any more (lookups search, as for any directory)
    if (this.madeHashes >= MAX_MADE_HASHES) {
      this.made.clear();
      this.madeHashes = 0;
      this.lastMade = undefined;
      return;
    }
    made.add(h);
    this.madeHashes++;
  }

  /**
   * The item (dir, DIR_ITEM, hash) holds `items` (null: none), as read or just written to the tree; past
   * MAX_KEPT items everything kept goes first.
   */
  set(dir: bigint, hash: bigint, items: BtrfsDirItem[] | null): void {
    if (this.kept >= MAX_KEPT) this.clear();
    this.at(dir);
    let d = this.lastItems;
    if (!d) this.dirs.set(dir, (d = this.lastItems = new Map()));
    const h = Number(hash);
    if (!d.has(h)) this.kept++;
    d.set(h, items);
  }

  clear(): void {
    this.dirs.clear();
    this.kept = 0;
    this.nextIndex.clear();
    this.made.clear();
    this.madeHashes = 0;
    this.lastDir = undefined;
  }

  /** Makes `dir` the last directory asked for (lastItems, lastMade, lastNext are its). */
  private at(dir: bigint): void {
    if (dir === this.lastDir) return;
    this.lastDir = dir;
    this.lastItems = this.dirs.get(dir);
    this.lastMade = this.made.get(dir);
    this.lastNext = this.nextIndex.get(dir);
  }
}
