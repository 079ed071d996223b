import { ImageError } from '../../errors.js';
import type { BlockDevice } from '../device.js';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_ITEM_KEY,
  BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_CHUNK_ITEM_KEY, BTRFS_CHUNK_TREE_OBJECTID, BTRFS_DEV_EXTENT_KEY,
  BTRFS_DEV_TREE_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FIRST_CHUNK_TREE_OBJECTID, BTRFS_ROOT_ITEM_KEY,
  BTRFS_ROOT_TREE_OBJECTID,
} from '../structs/constants.js';
import { encodeChunk, encodeDevExtent } from '../structs/chunk-items.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { encodeBlockGroupItem } from '../structs/tree-items.js';
import { commitFilesystem } from './commit.js';
import { chunkLength } from './chunk-size.js';
import { BTRFS_STRIPE_LEN, type ChunkInfo, ChunkMap } from './chunks.js';
import { type Item, ItemMap, type Key } from './item-map.js';
import { fillHoles } from './holes.js';
import { PageStore } from './page-store.js';
import { RangeSet } from './ranges.js';
import { MetadataSpace } from './tree-space.js';
import { copyRoot, CowRefs } from './cow-refs.js';
import { BTree } from '../engine/ctree.js';
import { buildTree, dropTree } from '../engine/bulk.js';
import { BlockStore } from '../engine/store.js';

/**
 * In-memory, load-modify-commit model of a single-device btrfs filesystem.
 *
 * Every tree's items are held in an ItemMap per root objectid, paged under one PageStore budget: pages
 * not in use are packed, and with a spill backend moved out of memory. File data is never held: callers
 * allocate data extents (allocData), write them straight to the device (writeData) and record them with
 * the helpers in extents.ts. commit() (commit.ts) turns the model into tree blocks in space the committed
 * state does not use, then writes the superblocks: a crash at any point leaves the previous commit intact.
 */
export const SZ_1M = 1n << 20n;

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
      e.put(key, data);
      e.store.trim();
      return;
    }
    this.state.items.put(key, data);
    this.state.dirty = true;
  }
  delete(key: Key): boolean {
    const e = this.state.engine;
    if (e) {
      const had = e.delete(key);
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

export interface GrowthOptions {
  /** May the device grow when chunks run out of room? (default true) */
  growable?: boolean;
  /** Hard limit on the device size in bytes; exceeding it is an ImageError (IMAGE_FULL). */
  maxSize?: bigint;
  /** Memory budget (and spill file) for the items of every tree; default: 48 MiB, cold pages in memory. */
  pageStore?: PageStore;
}

export class Filesystem {
  readonly device: BlockDevice;
  /** Superblock of the last commit (template for the next one). */
  sb: BtrfsSuperBlock;
  readonly chunks = new ChunkMap();
  readonly trees = new Map<bigint, TreeState>();
  /** Profile bits for new METADATA/SYSTEM chunks (0n = single, or BTRFS_BLOCK_GROUP_DUP). */
  metadataProfile: bigint;
  /** Profile bits for new DATA chunks: single, or DUP when the image's data is DUP (mkfs.btrfs -d dup). */
  dataProfile = 0n;
  growable: boolean;
  maxSize: bigint | undefined;
  /** Free logical space of data block groups usable by allocData now. */
  dataFree = new RangeSet();
  /** Data freed since the last commit: the committed state may still reference it, so no reuse yet. */
  pinned = new RangeSet();
  /** Physical device ranges taken by dev extents. */
  devUsed = new RangeSet();
  /** Logical ranges of every tree block of the last committed state: never overwritten by a commit. */
  committedBusy = new RangeSet();
  /** Shared by the item maps of every tree. */
  readonly pageStore: PageStore;
  /** Metadata space of the copy-on-write trees. */
  readonly space: MetadataSpace;
  /** Their blocks' references (extent tree items) and copy-on-write of shared blocks. */
  readonly refs: CowRefs;
  /** Decoded blocks of the copy-on-write trees, under the same budget as the item maps. */
  readonly store: BlockStore;

  constructor(device: BlockDevice, sb: BtrfsSuperBlock, metadataProfile: bigint, growth: GrowthOptions = {}) {
    this.device = device;
    this.sb = sb;
    this.metadataProfile = metadataProfile;
    this.growable = growth.growable ?? true;
    this.maxSize = growth.maxSize;
    this.pageStore = growth.pageStore ?? new PageStore();
    this.headerFsid = sb.fsid;
    this.space = new MetadataSpace(this);
    this.refs = new CowRefs(this, this.space);
    this.store = new BlockStore({
      nodesize: sb.nodesize, ident: this, csumType: sb.csum_type, device, space: this.refs, hooks: this.refs, transid: sb.generation + 1n,
      budget: this.pageStore.budget, toPhysical: (bytenr, len) => this.chunks.toPhysical(bytenr, len),
      // snapshots share blocks: a subvolume tree may hold blocks another subvolume owns
      ownerOk: (tree, owner) => tree === owner || (isSubvolumeTree(tree) && isSubvolumeTree(owner)),
    });
  }

  get sectorsize(): number {
    return this.sb.sectorsize;
  }
  get nodesize(): number {
    return this.sb.nodesize;
  }
  /** Generation of the last commit. */
  get generation(): bigint {
    return this.sb.generation;
  }
  /** Transaction id of the changes being made now: what the next commit will be stamped with. */
  get transid(): bigint {
    return this.sb.generation + 1n;
  }

  /** Write everything changed since the last commit and switch the superblocks to it (see commit.ts). */
  commit(): void {
    fillHoles(this); // explicit hole extents first, on images without NO_HOLES
    commitFilesystem(this);
  }

  hasTree(rootid: bigint): boolean {
    return this.trees.has(rootid);
  }

  tree(rootid: bigint): TreeHandle {
    const t = this.trees.get(rootid);
    if (!t) throw new ImageError('IMAGE_NO_TREE', `tree ${rootid} does not exist`);
    return new TreeHandle(t);
  }

  /** Adds an empty tree. Its ROOT_ITEM (if it needs one) is the caller's to put; commit fills in its location. */
  createTree(rootid: bigint): TreeHandle {
    if (this.trees.has(rootid)) throw new ImageError('IMAGE_TREE_EXISTS', `tree ${rootid} already exists`);
    const t = isSubvolumeTree(rootid)
      ? new TreeState(rootid, { engine: () => BTree.create(this.store, rootid) }, false)
      : new TreeState(rootid, new ItemMap(this.pageStore), true);
    this.trees.set(rootid, t);
    return new TreeHandle(t);
  }

  /**
   * Make copy-on-write tree `rootid` a snapshot of tree `source`: a copy of its root block sharing
   * everything below (btrfs_copy_root). What `rootid` held before is dropped.
   */
  shareTree(source: bigint, rootid: bigint): void {
    const src = this.trees.get(source)?.engine;
    const dst = this.trees.get(rootid);
    if (!src || !dst?.isEngine) throw new ImageError('IMAGE_INTERNAL', `cannot snapshot tree ${source} into ${rootid}`);
    dropTree(dst.engine!);
    dst.engine = copyRoot(this.refs, src, rootid);
    this.store.trim();
  }

  /** Drop a whole tree (its ROOT_ITEM and refs are the caller's to remove). */
  deleteTree(rootid: bigint): void {
    const e = this.trees.get(rootid)?.engine;
    if (e) dropTree(e);
    this.trees.delete(rootid);
  }

  /** Key of the ROOT_ITEM of `rootid` in the root tree (offset may be a snapshot transid). */
  rootItemKey(rootid: bigint): Key | undefined {
    return this.trees.get(BTRFS_ROOT_TREE_OBJECTID)!.items.first(
      { objectid: rootid, type: BTRFS_ROOT_ITEM_KEY, offset: 0n },
      { objectid: rootid, type: BTRFS_ROOT_ITEM_KEY, offset: (1n << 64n) - 1n },
    )?.key;
  }

  // ---- data space ----

  /** Reserve `numBytes` (rounded up to sectorsize) of contiguous data space; returns the logical bytenr. */
  allocData(numBytes: bigint | number): bigint {
    const ss = BigInt(this.sectorsize);
    const len = ((BigInt(numBytes) + ss - 1n) / ss) * ss;
    if (len <= 0n) throw new ImageError('IMAGE_BAD_ALLOC', `cannot allocate ${numBytes} bytes`);
    let at = this.findDataSpace(len);
    if (at === undefined) {
      this.addChunk(BTRFS_BLOCK_GROUP_DATA, len);
      at = this.findDataSpace(len);
      if (at === undefined) throw new ImageError('IMAGE_FULL', `no contiguous ${len} bytes of data space after adding a chunk`);
    }
    this.dataFree.remove(at, at + len);
    return at;
  }

  /** First fit inside ONE data block group: an extent may not cross a block group boundary. */
  private findDataSpace(len: bigint): bigint | undefined {
    const ss = BigInt(this.sectorsize);
    for (const c of this.chunks.all()) {
      if (!(c.type & BTRFS_BLOCK_GROUP_DATA)) continue;
      const at = this.dataFree.findFree(len, ss, c.logical, c.logical + c.length);
      if (at !== undefined) return at;
    }
    return undefined;
  }

  /**
   * Give back space from allocData that was never recorded in an extent item. It was free in the
   * committed state too, so it is reusable at once.
   */
  releaseData(bytenr: bigint, numBytes: bigint): void {
    if (numBytes > 0n) this.dataFree.add(bytenr, bytenr + numBytes);
  }

  writeData(bytenr: bigint, bytes: Uint8Array): void {
    for (const phys of this.chunks.toPhysical(bytenr, bytes.length)) this.device.write(phys, bytes);
  }

  readData(bytenr: bigint, len: number): Uint8Array {
    const phys = this.chunks.toPhysical(bytenr, len)[0]!;
    return this.device.read(phys, len);
  }

  // ---- chunks ----

  /**
   * Add a chunk of `type` (DATA, METADATA or SYSTEM) with at least `minBytes` usable, with its dev
   * extents, chunk item and block group item, growing the device if allowed. Sized as the kernel sizes
   * chunks, or as mkfs.btrfs does with `mkfs` (chunk-size.ts).
   */
  addChunk(type: bigint, minBytes: bigint, mkfs = false): ChunkInfo {
    const profile = type === BTRFS_BLOCK_GROUP_DATA ? this.dataProfile : this.metadataProfile;
    const copies = profile === BTRFS_BLOCK_GROUP_DUP ? 2 : 1;
    // +2 stripe windows so a superblock copy inside the chunk cannot eat the needed room
    const need = roundUp(minBytes + 2n * BTRFS_STRIPE_LEN, SZ_1M);
    let length = chunkLength(type, copies, this.sb.dev_item.total_bytes, mkfs);
    if (length < need) length = need;
    // on a fixed-size device settle for what still fits, as long as it covers the need
    const free = this.devFree();
    const fits = (len: bigint): bigint[] | undefined => placeStripes(free, len, copies);
    let stripes = fits(length);
    if (!stripes && !this.growable) {
      let biggest = 0n;
      for (const [s, e] of free) if (e - s > biggest) biggest = e - s;
      const shrunk = ((copies === 2 ? biggest / 2n : biggest) / SZ_1M) * SZ_1M;
      if (shrunk >= need) {
        length = shrunk;
        stripes = fits(length);
      }
    }
    if (!stripes) {
      const newTotal = roundUp(this.devEnd() + BigInt(copies) * length, SZ_1M);
      this.growTo(newTotal, type, length);
      stripes = fits(length) ?? placeStripes(this.devFree(), length, copies);
      if (!stripes) throw new ImageError('IMAGE_FULL', `cannot place a ${length}-byte chunk after growing the device`);
    }
    const chunk: ChunkInfo = {
      logical: this.chunks.nextLogical(SZ_1M),
      length,
      type: type | profile,
      stripes: stripes.map((offset) => ({ devid: this.sb.dev_item.devid, offset, dev_uuid: this.sb.dev_item.uuid })),
    };
    this.registerChunk(chunk);
    return chunk;
  }

  /** Record a chunk in the chunk map, chunk tree, dev tree and extent tree (block group item). */
  registerChunk(chunk: ChunkInfo): void {
    this.chunks.add(chunk);
    this.tree(BTRFS_CHUNK_TREE_OBJECTID).put(
      { objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID, type: BTRFS_CHUNK_ITEM_KEY, offset: chunk.logical },
      encodeChunk({
        length: chunk.length, owner: BTRFS_EXTENT_TREE_OBJECTID, stripe_len: BTRFS_STRIPE_LEN, type: chunk.type,
        io_align: Number(BTRFS_STRIPE_LEN), io_width: Number(BTRFS_STRIPE_LEN), sector_size: this.sectorsize,
        sub_stripes: 1, stripes: chunk.stripes,
      }),
    );
    for (const s of chunk.stripes) {
      this.tree(BTRFS_DEV_TREE_OBJECTID).put(
        { objectid: s.devid, type: BTRFS_DEV_EXTENT_KEY, offset: s.offset },
        encodeDevExtent({
          chunk_tree: BTRFS_CHUNK_TREE_OBJECTID, chunk_objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID,
          chunk_offset: chunk.logical, length: chunk.length, chunk_tree_uuid: this.chunkTreeUuid,
        }),
      );
      this.devUsed.add(s.offset, s.offset + chunk.length);
    }
    this.tree(BTRFS_EXTENT_TREE_OBJECTID).put(
      { objectid: chunk.logical, type: BTRFS_BLOCK_GROUP_ITEM_KEY, offset: chunk.length },
      encodeBlockGroupItem({ used: 0n, chunk_objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID, flags: chunk.type }),
    );
    if (chunk.type & BTRFS_BLOCK_GROUP_DATA) {
      this.dataFree.add(chunk.logical, chunk.logical + chunk.length);
      for (const [s, e] of this.chunks.superExcluded(chunk)) this.dataFree.remove(s, e);
    }
  }

  /** fsid stamped into tree block headers (metadata_uuid when that feature is on). */
  headerFsid: Uint8Array;

  /** Set by create/open: the chunk tree uuid stamped into every tree block header and dev extent. */
  chunkTreeUuid: Uint8Array = new Uint8Array(16);

  private devFree(): RangeSet {
    const free = RangeSet.of([[SZ_1M, this.sb.dev_item.total_bytes]]);
    for (const [s, e] of this.devUsed) free.remove(s, e);
    return free;
  }

  private devEnd(): bigint {
    let end = SZ_1M;
    for (const [, e] of this.devUsed) if (e > end) end = e;
    return end;
  }

  private growTo(newTotal: bigint, type: bigint, length: bigint): void {
    const limit = this.maxSize;
    if (!this.growable || (limit !== undefined && newTotal > limit)) {
      const kind = type & BTRFS_BLOCK_GROUP_DATA ? 'data' : type & BTRFS_BLOCK_GROUP_SYSTEM ? 'system' : 'metadata';
      throw new ImageError(
        'IMAGE_FULL',
        `image is full: a new ${length}-byte ${kind} chunk needs the device to grow to ${newTotal} bytes` +
          (limit !== undefined ? ` (limit ${limit})` : ' and it is not growable'),
      );
    }
    if (newTotal > this.device.size()) this.device.grow(newTotal);
    this.sb.dev_item.total_bytes = newTotal;
    this.sb.total_bytes = newTotal;
  }
}

/** The fs tree and subvolume/snapshot trees (objectids 5 and 256 up to the negative reserved ids). */
export function isSubvolumeTree(id: bigint): boolean {
  return id === 5n || (id >= 256n && id <= (1n << 64n) - 1n - 256n);
}

function roundUp(v: bigint, a: bigint): bigint {
  return ((v + a - 1n) / a) * a;
}

/** Physical start of each of `copies` stripes of `len` bytes in free device space, 1 MiB aligned. */
function placeStripes(free: RangeSet, len: bigint, copies: number): bigint[] | undefined {
  const f = free.clone();
  const out: bigint[] = [];
  for (let i = 0; i < copies; i++) {
    const at = f.findFree(len, SZ_1M);
    if (at === undefined) return undefined;
    f.remove(at, at + len);
    out.push(at);
  }
  return out;
}
