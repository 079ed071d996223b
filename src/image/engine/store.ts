import { ImageError } from '../../errors.js';
import type { BlockDevice } from '../device.js';
import { type Expect, treeBlockError } from '../read/block-check.js';
import { Block } from './block.js';
import { decodeBlock, encodeBlock } from './block-codec.js';

/**
 * Where tree blocks come from and go to. The filesystem implements it with its metadata block groups
 * and its extent bookkeeping; the engine's tests with a plain range of logical space.
 */
export interface TreeBlockSpace {
  /** A nodesize-aligned logical address free now and in the committed state, for a block of `owner`. */
  alloc(owner: bigint, level: number): bigint;
  /**
   * `bytenr` is no longer used by the tree changed now. `fresh`: it was allocated in this transaction
   * (nothing committed points at it, so it may be reused at once); otherwise it stays pinned until the
   * commit that stops referencing it is durable. Returns false when the block is still referenced
   * (by another tree sharing it): then it stays as it is.
   */
  free(bytenr: bigint, owner: bigint, level: number, fresh: boolean): boolean | void;
}

export interface CowHooks {
  /**
   * Called when `old` (a committed or shared block) is replaced by its copy `copy` in tree `tree`, before
   * the tree's reference to `old` is dropped: the kernel's update_ref_for_cow.
   */
  cowed?(tree: { readonly rootid: bigint }, old: Block, copy: Block): void;
}

export interface StoreOptions {
  nodesize: number;
  /** fsid (or metadata uuid) and chunk tree uuid stamped in headers, read when a block is written. */
  ident: { readonly headerFsid: Uint8Array; readonly chunkTreeUuid: Uint8Array };
  /** The superblock's csum_type (loaded: loadCsum), for block checksums written and checked. */
  csumType: number;
  device: BlockDevice;
  /** Physical offsets of every copy of [bytenr, bytenr + len). */
  toPhysical: (bytenr: bigint, len: number) => bigint[];
  space: TreeBlockSpace;
  /** Transaction id of the changes made now (last committed generation + 1). */
  transid: bigint;
  /** Memory for decoded blocks; clean blocks past it are dropped, dirty ones written early. */
  budget?: number;
  /** Reference bookkeeping on copy-on-write (the filesystem's update_ref_for_cow). */
  hooks?: CowHooks;
  /** Whether a block owned by `owner` may sit in tree `treeId` (snapshots share blocks). */
  ownerOk?: (treeId: bigint, owner: bigint) => boolean;
}

const DEFAULT_BUDGET = 32 << 20;

/**
 * The block cache of one filesystem: decoded blocks by address, least recently used first, and the set
 * of blocks made in this transaction that are not on disk yet. Writing such a block early is safe: it
 * sits at an address the committed state does not use, and no superblock points at it until commit.
 */
export class BlockStore {
  readonly nodesize: number;
  transid: bigint;
  budget: number;
  private readonly cache = new Map<bigint, Block>();
  /** Blocks of this transaction whose current content is not on disk (always cached). */
  private readonly dirty = new Set<Block>();
  /** Addresses allocated in this transaction (written or not): freeing one does not pin it. */
  private readonly fresh = new Set<bigint>();
  /** Use counter: the least recently used blocks leave first (cheaper than reordering a Map per hit). */
  clock = 0;
  /** Blocks written early, counted for tests and benches. */
  earlyWrites = 0;
  /** Blocks dropped from the cache to keep within the budget. */
  evictions = 0;
  /** Blocks read from the device (cache misses). */
  reads = 0;
  /**
   * Tree operations in progress (one tree's change may change another: a leaf's copy-on-write adds
   * data references to the extent tree): the cache is trimmed only when none is, as paths hold blocks.
   */
  depth = 0;
  /**
   * Bumped whenever a block is made, copied, freed, dropped from the cache or stops being of this
   * transaction: a path remembered before (BTree's search hints) may then lead through blocks that are
   * no longer the tree's or no longer the ones in the cache.
   */
  shape = 0;
  /**
   * Blocks each tree gained (made, copied to) minus blocks it let go, since its ROOT_ITEM's bytes_used
   * was last brought up to date: the kernel's root_add_used / root_sub_used, so that a commit need not
   * count a tree's blocks (a walk of all its nodes) to know it. A copy-on-write counts +1 and -1.
   */
  private readonly usedDelta = new Map<bigint, number>();

  get hooks(): CowHooks | undefined {
    return this.o.hooks;
  }

  constructor(readonly o: StoreOptions) {
    this.nodesize = o.nodesize;
    this.transid = o.transid;
    this.budget = o.budget ?? DEFAULT_BUDGET;
  }

  private get blockCost(): number {
    return this.nodesize * 2;
  }

  /** The block at `bytenr`, verified against what its parent (or root item) promised. */
  read(bytenr: bigint, exp: Expect): Block {
    const hit = this.cache.get(bytenr);
    if (hit) {
      hit.lastUse = ++this.clock;
      if (hit.level !== exp.level || hit.generation !== exp.generation) {
        throw treeBlockError(bytenr, exp.owner, `level ${hit.level} generation ${hit.generation}, parent expects level ${exp.level} generation ${exp.generation}`);
      }
      return hit;
    }
    const copies = this.o.toPhysical(bytenr, this.nodesize);
    this.reads++;
    const problems: string[] = [];
    for (const phys of copies) {
      const b = decodeBlock(this.o.device.read(phys, this.nodesize), this.nodesize, bytenr, exp, this.o.ident.headerFsid, this.o.csumType, this.o.ownerOk);
      if (typeof b !== 'string') {
        b.lastUse = ++this.clock;
        b.fresh = b.generation === this.transid && this.fresh.has(bytenr);
        this.cache.set(bytenr, b);
        return b;
      }
      problems.push(copies.length > 1 ? `copy at physical ${phys}: ${b}` : b);
    }
    throw treeBlockError(bytenr, exp.owner, problems.join('; '));
  }

  /** A new, empty block of this transaction (btrfs_alloc_tree_block). */
  create(owner: bigint, level: number): Block {
    const bytenr = this.o.space.alloc(owner, level);
    if (this.cache.has(bytenr) || this.fresh.has(bytenr)) throw new ImageError('IMAGE_INTERNAL', `tree block ${bytenr} allocated twice`);
    const b = new Block(bytenr, level, this.transid, owner);
    this.adopt(b);
    this.countUsed(owner, 1);
    return b;
  }

  private countUsed(owner: bigint, n: number): void {
    this.usedDelta.set(owner, (this.usedDelta.get(owner) ?? 0) + n);
  }

  /** The trees whose block count moved since it was last taken. */
  usedDeltaOwners(): IterableIterator<bigint> {
    return this.usedDelta.keys();
  }

  /** Blocks tree `owner` gained (or lost, negative) since the last take: see usedDelta. */
  peekUsedDelta(owner: bigint): number {
    return this.usedDelta.get(owner) ?? 0;
  }

  /** peekUsedDelta, and start counting again from 0: the caller has put it into the ROOT_ITEM. */
  takeUsedDelta(owner: bigint): number {
    const n = this.peekUsedDelta(owner);
    this.usedDelta.delete(owner);
    return n;
  }

  /** Copy `b` to a new address in this transaction; the caller frees (or keeps) the old one. */
  copy(b: Block, owner: bigint): Block {
    const bytenr = this.o.space.alloc(owner, b.level);
    if (this.cache.has(bytenr) || this.fresh.has(bytenr)) throw new ImageError('IMAGE_INTERNAL', `tree block ${bytenr} allocated twice`);
    const c = b.copyTo(bytenr, this.transid, owner);
    this.adopt(c);
    this.countUsed(owner, 1);
    return c;
  }

  private adopt(b: Block): void {
    this.shape++;
    b.lastUse = ++this.clock;
    b.fresh = true;
    b.dirty = true;
    this.cache.set(b.bytenr, b);
    this.dirty.add(b);
    this.fresh.add(b.bytenr);
  }

  /** Is `b` a block of this transaction (changed in place, no copy-on-write)? */
  isFresh(b: Block): boolean {
    return b.fresh;
  }

  /** Mark a block of this transaction as changed since it was last written. */
  touch(b: Block): void {
    if (!this.isFresh(b)) throw new ImageError('IMAGE_INTERNAL', `tree block ${b.bytenr} changed without copy-on-write`);
    if (!b.dirty) {
      b.dirty = true;
      this.dirty.add(b);
    }
  }

  /**
   * Tree `owner` no longer references the block: unless another tree still does, it leaves the cache
   * and its space is given back (or pinned).
   */
  free(b: Block, owner: bigint): void {
    this.shape++;
    this.countUsed(owner, -1);
    if (this.o.space.free(b.bytenr, owner, b.level, this.fresh.has(b.bytenr)) === false) return;
    this.cache.delete(b.bytenr);
    this.dirty.delete(b);
    this.fresh.delete(b.bytenr);
    b.fresh = b.dirty = false;
  }

  /**
   * A block of this transaction that a snapshot now shares: from here on it is copied on change like
   * a committed block (the kernel's FORCE_COW), though it is still written at commit.
   */
  unfresh(b: Block): void {
    this.shape++;
    b.fresh = false;
  }

  /**
   * A block whose last reference its caller dropped (a deleted subvolume's, subvol-drop.ts): out of the
   * cache and the blocks to write; counted off `owner`. Whether it was made in this transaction (its space
   * is then free at once, else pinned until the commit).
   */
  discard(bytenr: bigint, owner: bigint): boolean {
    this.shape++;
    this.countUsed(owner, -1);
    const b = this.cache.get(bytenr);
    if (b) {
      this.cache.delete(bytenr);
      this.dirty.delete(b);
      b.fresh = b.dirty = false;
    }
    return this.fresh.delete(bytenr);
  }

  /** Frees a block by address, decoded or not (dropping a subtree without reading its leaves). */
  freeAddr(bytenr: bigint, owner: bigint, level: number): void {
    this.shape++;
    const b = this.cache.get(bytenr);
    if (b) {
      this.free(b, owner);
      return;
    }
    this.countUsed(owner, -1);
    if (this.o.space.free(bytenr, owner, level, this.fresh.has(bytenr)) === false) return;
    this.fresh.delete(bytenr);
  }

  private writeBlock(b: Block): void {
    const bytes = encodeBlock(b, this.nodesize, this.o.ident.headerFsid, this.o.ident.chunkTreeUuid, this.o.csumType);
    for (const phys of this.o.toPhysical(b.bytenr, this.nodesize)) this.o.device.write(phys, bytes);
  }

  /**
   * Keep the cache within its budget: called between operations, when no path holds blocks. Evicts in
   * batches down to 3/4 of the budget, least recently used first.
   */
  trim(): void {
    if (this.depth > 0) return;
    const max = Math.max(16, Math.floor(this.budget / this.blockCost));
    if (this.cache.size <= max) return;
    this.shape++;
    const order = [...this.cache.values()].sort((a, b) => a.lastUse - b.lastUse);
    const target = Math.max(12, Math.floor((max * 3) / 4));
    for (const b of order) {
      if (this.cache.size <= target) break;
      if (b.dirty) {
        this.writeBlock(b);
        b.dirty = false;
        this.dirty.delete(b);
        this.earlyWrites++;
      }
      this.cache.delete(b.bytenr);
      this.evictions++;
    }
  }

  /** Write every dirty block (address order). The caller flushes, then writes the superblock. */
  writeDirty(): number {
    const list = [...this.dirty].sort((a, b) => (a.bytenr < b.bytenr ? -1 : a.bytenr > b.bytenr ? 1 : 0));
    for (const b of list) {
      this.writeBlock(b);
      b.dirty = false;
    }
    this.dirty.clear();
    return list.length;
  }

  /** The commit is durable: blocks of this transaction become committed ones, changes start a new one. */
  endTransaction(): void {
    if (this.dirty.size) throw new ImageError('IMAGE_INTERNAL', `${this.dirty.size} tree blocks not written at commit`);
    this.fresh.clear();
    this.shape++;
    this.releaseHolders();
    for (const b of this.cache.values()) b.fresh = false;
    this.transid++;
  }

  /** Searches' paths kept since the last commit (SearchHints): they hold decoded blocks outside the cache. */
  readonly holders = new Set<{ release(): void }>();

  private releaseHolders(): void {
    for (const h of this.holders) h.release();
    this.holders.clear();
  }

  /** Forget everything decoded (a failed transaction: the disk still holds the committed state). */
  reset(): void {
    this.shape++;
    this.releaseHolders();
    this.cache.clear();
    this.dirty.clear();
    this.fresh.clear();
  }

  get cachedBlocks(): number {
    return this.cache.size;
  }
  get dirtyBlocks(): number {
    return this.dirty.size;
  }
}
