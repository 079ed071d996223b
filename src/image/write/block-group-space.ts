import { ImageError } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID,
} from '../structs/constants.js';
import { decodeBlockGroupItem, encodeBlockGroupItem } from '../structs/tree-items.js';
import type { ChunkInfo, ChunkMap } from './chunks.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { blockGroupTreeId } from './block-group-tree.js';
import { hasFreeSpaceTree } from './features.js';
import { addBlockGroupFreeSpace, loadFreeRanges, updateBlockGroupFreeSpace } from './free-space-tree.js';
import { RangeSet } from './ranges.js';
import { extentTreeFreeRanges } from './space-cache-v1.js';
import type { TreeHandle } from './tree-state.js';

/**
 * Free space of the block groups, for data extents and tree blocks alike (the kernel's free space cache
 * and its accounting of block group `used`). Each block group's free set is built on first use from its
 * free space tree items (a block group made in this transaction starts empty of extents), so opening an
 * image reads nothing here. What this transaction allocates (`taken`) and the committed extents it frees
 * (`pinned`: still referenced by the committed state, reusable only after the next commit) are applied
 * to the free space tree and the block group items by the commit (applyToTrees), round by round, as the
 * kernel's delayed refs adjust them when they run.
 */
export interface SpaceOwner {
  readonly chunks: ChunkMap;
  readonly sectorsize: number;
  readonly nodesize: number;
  /** For its compat_ro flags: is there a free space tree? */
  readonly sb: BtrfsSuperBlock;
  tree(rootid: bigint): TreeHandle;
  /** Adds a chunk of `type` with at least `minBytes` usable (may grow the device). */
  addChunk(type: bigint, minBytes: bigint): unknown;
  /** Change of the superblock's bytes_used (the sum of the block groups' `used`). */
  addBytesUsed(delta: bigint): void;
}

export class BlockGroupSpace {
  /**
   * Free now, by block group (superblock mirrors excluded); built on first use. Keyed by the chunk object
   * (ChunkMap keeps one per chunk, never replaced): an object key hashes once, a bigint one per lookup.
   */
  private readonly pools = new Map<ChunkInfo, RangeSet>();
  /** Allocated in this transaction and not given back. */
  taken = new RangeSet();
  /** Committed extents freed in this transaction. */
  pinned = new RangeSet();
  /** Block groups made in this transaction: not in the free space tree or the extent tree yet. */
  private readonly fresh = new Set<bigint>();
  /**
   * Space no tree accounts for that must not be allocated before the next commit: the blocks of a tree
   * log being replayed (log-replay.ts), which the superblock on disk still points at until then.
   */
  private excluded = new RangeSet();
  /** What the trees already reflect of `taken` and `pinned` (applyToTrees). */
  private accTaken = new RangeSet();
  private accPinned = new RangeSet();

  constructor(private readonly fs: SpaceOwner) {}

  /** A chunk made in this transaction: all free; its items are the commit's to insert. */
  newBlockGroup(c: ChunkInfo): void {
    this.fresh.add(c.logical);
    const free = RangeSet.of([[c.logical, c.logical + c.length]]);
    for (const [s, e] of this.fs.chunks.superExcluded(c)) free.remove(s, e);
    this.pools.set(c, free);
  }

  private pool(c: ChunkInfo): RangeSet {
    let p = this.pools.get(c);
    if (p) return p;
    // no free space tree (v1 space cache or none): from the extent tree, as the kernel does (space-cache-v1.ts)
    const fst = hasFreeSpaceTree(this.fs.sb);
    const free = fst
      ? loadFreeRanges(this.fs.tree(BTRFS_FREE_SPACE_TREE_OBJECTID), c, this.fs.sectorsize)
      : extentTreeFreeRanges(this.fs.tree(BTRFS_EXTENT_TREE_OBJECTID), c, this.fs.nodesize);
    if (!free) throw new ImageError('IMAGE_BAD_FREE_SPACE', `block group ${c.logical} has no free space info item`, { offset: c.logical });
    for (const [s, e] of this.fs.chunks.superExcluded(c)) free.remove(s, e);
    // the extent tree may already lack what this transaction freed: still in use until the commit
    if (!fst) for (const [s, e] of this.pinned.slice(c.logical, c.logical + c.length)) free.remove(s, e);
    for (const [s, e] of this.excluded.slice(c.logical, c.logical + c.length)) free.remove(s, e);
    // (nothing of this block group was taken or pinned yet: both need its pool first)
    p = free;
    this.pools.set(c, p);
    return p;
  }

  /** Builds the free sets of every block group of `type` (before the commit changes the free space tree). */
  loadAll(type: bigint): void {
    for (const c of this.fs.chunks.all()) if (c.type & type) this.pool(c);
  }

  /** First fit of `len` bytes, `align`-aligned, inside one block group of `type`; adds a chunk when none has room. */
  alloc(type: bigint, len: bigint, align: bigint, chunkMin = len): bigint {
    let at = this.find(type, len, align);
    if (at === undefined) {
      this.fs.addChunk(type, chunkMin);
      at = this.find(type, len, align);
      if (at === undefined) throw new ImageError('IMAGE_FULL', `no contiguous ${len} bytes of free space after adding a chunk`);
    }
    return at;
  }

  private find(type: bigint, len: bigint, align: bigint): bigint | undefined {
    for (const c of this.chunksOf(type)) {
      const p = this.pool(c);
      const at = p.findFree(len, align, c.logical, c.logical + c.length);
      if (at === undefined) continue;
      p.remove(at, at + len);
      this.taken.add(at, at + len);
      return at;
    }
    return undefined;
  }

  /**
   * The block groups of `type` in address order, kept for the last type asked while no chunk was added
   * (every data extent allocated asks; a bigint `&` per chunk each time otherwise).
   */
  private chunksOf(type: bigint): readonly ChunkInfo[] {
    const all = this.fs.chunks.all();
    if (type !== this.typeOf || all.length !== this.typeScanned) {
      this.typeOf = type;
      this.typeScanned = all.length;
      this.typeChunks = all.filter((c) => (c.type & type) !== 0n);
    }
    return this.typeChunks;
  }
  private typeOf = -1n;
  private typeScanned = -1;
  private typeChunks: readonly ChunkInfo[] = [];

  /** Keep [start, start+len) from allocation until the next commit is durable, without accounting it. */
  exclude(start: bigint, len: bigint): void {
    this.excluded.add(start, start + len);
    this.pools.get(this.chunkAt(start))?.remove(start, start + len);
  }

  /**
   * Take [start, start+len), free in the committed state, as if alloc had returned it: an extent made in
   * a transaction the image did not commit (a tree log's data extent) that this one keeps.
   */
  claim(start: bigint, len: bigint): void {
    const p = this.poolAt(start);
    if (p.slice(start, start + len).total() !== len) {
      throw new ImageError('IMAGE_BAD_EXTENT', `extent at ${start} (${len} bytes) is not free space`, { offset: start });
    }
    p.remove(start, start + len);
    this.taken.add(start, start + len);
  }

  /** Space from alloc that ends up unused in this transaction: free again at once. */
  release(start: bigint, len: bigint): void {
    if (len <= 0n) return;
    this.taken.remove(start, start + len);
    this.poolAt(start).add(start, start + len);
  }

  /** A committed extent is freed: reusable once the commit that drops it is durable. */
  pin(start: bigint, len: bigint): void {
    if (len > 0n) this.pinned.add(start, start + len);
  }

  private poolAt(bytenr: bigint): RangeSet {
    return this.pool(this.chunkAt(bytenr));
  }

  private chunkAt(bytenr: bigint): ChunkInfo {
    const c = this.fs.chunks.all().find((x) => bytenr >= x.logical && bytenr < x.logical + x.length);
    if (!c) throw new ImageError('IMAGE_INTERNAL', `address ${bytenr} is in no block group`, { offset: bytenr });
    return c;
  }

  /**
   * One round of the commit: the free space tree and block group items are brought up to `taken` and
   * `pinned` as they are now (what changing those trees allocates is for the next round). Returns
   * whether anything changed.
   */
  applyToTrees(): boolean {
    const newTaken = minus(this.taken, this.accTaken);
    const unTaken = minus(this.accTaken, this.taken);
    const newPinned = minus(this.pinned, this.accPinned);
    const freshBgs = [...this.fresh];
    if (!newTaken.count && !unTaken.count && !newPinned.count && !freshBgs.length) return false;
    this.accTaken = this.taken.clone();
    this.accPinned = this.pinned.clone();
    this.fresh.clear();
    const fst = hasFreeSpaceTree(this.fs.sb) ? this.fs.tree(BTRFS_FREE_SPACE_TREE_OBJECTID) : undefined;
    const bgTree = this.fs.tree(blockGroupTreeId(this.fs.sb));
    let total = 0n;
    for (const c of this.fs.chunks.all()) {
      const end = c.logical + c.length;
      const isNew = freshBgs.includes(c.logical);
      const used = newTaken.slice(c.logical, end);
      const freed = unTaken.slice(c.logical, end);
      for (const [s, e] of newPinned.slice(c.logical, end)) freed.add(s, e);
      // a range allocated and freed in the same round (a data extent dropped again) leaves the tree as it is
      const both = intersect(used, freed);
      for (const [s, e] of both) {
        used.remove(s, e);
        freed.remove(s, e);
      }
      if (!isNew && !used.count && !freed.count) continue;
      if (fst) {
        if (isNew) addBlockGroupFreeSpace(fst, c);
        updateBlockGroupFreeSpace(fst, c, used, freed, this.fs.sectorsize);
      }
      const key = { objectid: c.logical, type: BTRFS_BLOCK_GROUP_ITEM_KEY, offset: c.length };
      const old = bgTree.get(key);
      if (!old) throw new ImageError('IMAGE_NO_BLOCK_GROUP', `chunk at ${c.logical} has no block group item`, { offset: c.logical });
      const bg = decodeBlockGroupItem(old);
      const delta = used.total() - freed.total();
      if (bg.used + delta < 0n) throw new ImageError('IMAGE_INTERNAL', `block group ${c.logical} would use ${bg.used + delta} bytes`, { offset: c.logical });
      if (delta !== 0n) bgTree.put(key, encodeBlockGroupItem({ ...bg, used: bg.used + delta }));
      total += delta;
    }
    this.fs.addBytesUsed(total);
    return true;
  }

  /** The commit is durable: pinned extents are free, a new transaction starts. */
  committed(): void {
    for (const [s, e] of this.excluded) this.pin(s, e - s); // free from now on, as pinned extents are
    this.excluded = new RangeSet();
    for (const [s, e] of this.pinned) {
      const c = this.fs.chunks.all().find((x) => s >= x.logical && s < x.logical + x.length)!;
      const p = this.pools.get(c);
      if (!p) continue; // read from the free space tree when first needed, which has them free now
      p.add(s, e);
      for (const [a, b] of this.fs.chunks.superExcluded(c)) p.remove(a, b);
    }
    this.taken = new RangeSet();
    this.pinned = new RangeSet();
    this.accTaken = new RangeSet();
    this.accPinned = new RangeSet();
  }
}

function minus(a: RangeSet, b: RangeSet): RangeSet {
  const out = a.clone();
  for (const [s, e] of b) out.remove(s, e);
  return out;
}

function intersect(a: RangeSet, b: RangeSet): RangeSet {
  const out = new RangeSet();
  for (const [s, e] of b) for (const [x, y] of a.slice(s, e)) out.add(x, y);
  return out;
}
