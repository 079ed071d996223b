import { ImageError } from '../../errors.js';
import type { FileRange } from '../../io/file-range.js';
import type { BlockDevice } from '../device.js';
import { BTree } from '../engine/ctree.js';
import { dropTree } from '../engine/bulk.js';
import { BlockStore, type CowHooks, type TreeBlockSpace } from '../engine/store.js';
import { BTRFS_BLOCK_GROUP_DATA, BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_TREE_OBJECTID } from '../structs/constants.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { addChunk, type ChunkOwner, registerChunk } from './chunk-alloc.js';
import { type ChunkInfo, ChunkMap } from './chunks.js';
import { BlockGroupSpace } from './block-group-space.js';
import type { Key } from './items.js';
import { RangeSet } from './ranges.js';
import { MetadataSpace } from './tree-space.js';
import { TreeHandle, type TreeOwner, TreeState } from './tree-state.js';

/**
 * The state of a single-device btrfs filesystem being changed: superblock, chunks, trees, data space.
 * Filesystem (filesystem.ts) adds the commit and snapshots on top; the modules those use (commit.ts,
 * extents.ts, holes.ts, cow-refs.ts) see only this model, so nothing imports its own importer.
 *
 * Every tree is a copy-on-write tree in the BlockStore (engine/), read block by block as it is used.
 * File data is never held: callers allocate data extents (allocData), write them straight to the
 * device (writeData) and record them with the helpers in extents.ts.
 */
export interface GrowthOptions {
  /** May the device grow when chunks run out of room? (default true) */
  growable?: boolean;
  /** Hard limit on the device size in bytes; exceeding it is an ImageError (IMAGE_FULL). */
  maxSize?: bigint;
  /**
   * Memory for decoded tree blocks (default 48 MiB): past it clean blocks are dropped (read again when
   * needed) and dirty ones written early to their new place, which no committed state uses.
   */
  cacheBytes?: number;
}

const DEFAULT_CACHE_BYTES = 48 << 20;

export class FilesystemModel implements ChunkOwner {
  readonly device: BlockDevice;
  /** Superblock of the last commit (template for the next one). */
  sb: BtrfsSuperBlock;
  readonly chunks = new ChunkMap();
  readonly trees = new Map<bigint, TreeState>();
  /**
   * Trees that may have something for the next commit: made since the last one, their root moved, an
   * inode item pending (what each tree tells `treeOwner`). The commit looks at these instead of every tree — the
   * kernel's dirty roots of a transaction; a tree nobody changed is not even set up.
   */
  readonly touched = new Set<TreeState>();
  /** Trees keeping decoded items since the last commit, which lets them go (TreeState.dropCaches). */
  readonly cached = new Set<TreeState>();
  /** What every tree of this filesystem reports to. */
  readonly treeOwner: TreeOwner = {
    touched: (t) => this.touched.add(t),
    cached: (t) => this.cached.add(t),
  };
  /** The highest tree id in `trees`, known while no tree was dropped (nextRootId). */
  private highest: bigint | undefined = 0n;

  /** A tree of the committed state (opening) or a new one: kept in `trees`. */
  addTree(t: TreeState): void {
    this.trees.set(t.rootid, t);
    if (this.highest !== undefined && t.rootid > this.highest) this.highest = t.rootid;
  }

  /** The highest id of the trees held. */
  highestTreeId(): bigint {
    if (this.highest === undefined) {
      let max = 0n;
      for (const id of this.trees.keys()) if (id > max) max = id;
      this.highest = max;
    }
    return this.highest;
  }
  /** Profile bits for new METADATA/SYSTEM chunks (0n = single, or BTRFS_BLOCK_GROUP_DUP). */
  metadataProfile: bigint;
  /** Profile bits for new DATA chunks: single, or DUP when the image's data is DUP (mkfs.btrfs -d dup). */
  dataProfile = 0n;
  growable: boolean;
  maxSize: bigint | undefined;
  /** Physical device ranges taken by dev extents. */
  devUsed = new RangeSet();
  /** Data whose checksums were added since the last commit: the commit merges their csum items (extents.ts). */
  csumTouched = new RangeSet();
  /** The buffer behind the csum item last grown, `used` bytes of it handed out (data-csums.ts, grown). */
  csumRoom: { buf: Uint8Array; used: number } | undefined;
  /** Free space of the block groups: data extents and tree blocks (block-group-space.ts). */
  readonly space: BlockGroupSpace;
  /** Tree block space, out of `space`. */
  readonly metaSpace: MetadataSpace;
  /** Chunks made in this transaction whose items the commit inserts (chunk, dev, extent trees). */
  pendingChunks: ChunkInfo[] = [];
  /** Change of the superblock's bytes_used since the last commit (block group usage). */
  bytesUsedDelta = 0n;
  /** Decoded blocks of every tree, under the one memory budget (cacheBytes). */
  readonly store: BlockStore;

  /**
   * `cow` makes the reference bookkeeping of the copy-on-write trees' blocks (their space and
   * update_ref_for_cow): the Filesystem passes its CowRefs, engine tests may pass plain space.
   */
  constructor(device: BlockDevice, sb: BtrfsSuperBlock, metadataProfile: bigint, growth: GrowthOptions, cow: (m: FilesystemModel) => TreeBlockSpace & CowHooks) {
    this.device = device;
    this.sb = sb;
    this.metadataProfile = metadataProfile;
    this.growable = growth.growable ?? true;
    this.maxSize = growth.maxSize;
    this.headerFsid = sb.fsid;
    this.space = new BlockGroupSpace(this);
    this.metaSpace = new MetadataSpace(this.space, sb.nodesize);
    const refs = cow(this);
    this.store = new BlockStore({
      nodesize: sb.nodesize, ident: this, csumType: sb.csum_type, device, space: refs, hooks: refs, transid: sb.generation + 1n,
      budget: growth.cacheBytes ?? DEFAULT_CACHE_BYTES, toPhysical: (bytenr, len) => this.chunks.toPhysical(bytenr, len),
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
  /** Data freed since the last commit: the committed state may still reference it, so no reuse yet. */
  get pinned(): RangeSet {
    return this.space.pinned;
  }

  addBytesUsed(delta: bigint): void {
    this.bytesUsedDelta += delta;
  }

  /** Transaction id of the changes being made now: what the next commit will be stamped with. */
  get transid(): bigint {
    // one bigint per generation, not a new one per call (every item made asks)
    const g = this.sb.generation;
    if (g !== this.transidOf) {
      this.transidOf = g;
      this.transidNext = g + 1n;
    }
    return this.transidNext;
  }
  private transidOf = -1n;
  private transidNext = 0n;

  hasTree(rootid: bigint): boolean {
    return this.trees.has(rootid);
  }

  tree(rootid: bigint): TreeHandle {
    // the two trees asked for last, most recent first: a received command asks ~12 times, mostly for the
    // same two or three trees, and a bigint-keyed Map lookup hashes the key each time
    if (rootid === this.lastTreeId) return this.lastTree!;
    if (rootid === this.prevTreeId) {
      const h = this.prevTree!;
      this.prevTreeId = this.lastTreeId;
      this.prevTree = this.lastTree;
      this.lastTreeId = rootid;
      this.lastTree = h;
      return h;
    }
    const t = this.trees.get(rootid);
    if (!t) throw new ImageError('IMAGE_NO_TREE', `tree ${rootid} does not exist`);
    this.prevTreeId = this.lastTreeId;
    this.prevTree = this.lastTree;
    this.lastTreeId = rootid;
    this.lastTree = t.handle;
    return t.handle;
  }
  private lastTreeId: bigint | undefined = undefined;
  private lastTree: TreeHandle | undefined = undefined;
  private prevTreeId: bigint | undefined = undefined;
  private prevTree: TreeHandle | undefined = undefined;

  /** Adds an empty tree. Its ROOT_ITEM (if it needs one) is the caller's to put; commit fills in its location. */
  createTree(rootid: bigint): TreeHandle {
    if (this.trees.has(rootid)) throw new ImageError('IMAGE_TREE_EXISTS', `tree ${rootid} already exists`);
    const t = new TreeState(rootid, { engine: () => BTree.create(this.store, rootid) }, undefined, this.treeOwner);
    this.addTree(t);
    // a new tree gets its root block and its ROOT_ITEM's location at the next commit, changed or not
    this.touched.add(t);
    return t.handle;
  }

  /** Drop a whole tree (its ROOT_ITEM and refs are the caller's to remove). */
  deleteTree(rootid: bigint): void {
    const e = this.trees.get(rootid)?.engine;
    if (e) dropTree(e);
    this.forgetTree(rootid);
  }

  /** Let go of a tree whose blocks the caller has freed (a deleted subvolume's: subvol-drop.ts). */
  forgetTree(rootid: bigint): void {
    const t = this.trees.get(rootid);
    this.trees.delete(rootid);
    if (t) {
      this.touched.delete(t);
      this.cached.delete(t);
    }
    this.highest = undefined;
    this.lastTreeId = this.prevTreeId = undefined; // tree() must not answer with the dropped one
    this.lastTree = this.prevTree = undefined;
  }

  /** Key of the ROOT_ITEM of `rootid` in the root tree (offset may be a snapshot transid). */
  rootItemKey(rootid: bigint): Key | undefined {
    return this.rootItem(rootid)?.key;
  }

  /** The ROOT_ITEM of `rootid`: its key and a copy of its bytes, to patch in place and put back. */
  rootItemCopy(rootid: bigint): { key: Key; data: Uint8Array } {
    const it = this.rootItem(rootid);
    if (!it) throw new ImageError('IMAGE_NO_ROOT_ITEM', `tree ${rootid} has no ROOT_ITEM in the root tree`);
    return { key: it.key, data: it.data.slice() };
  }

  private rootItem(rootid: bigint): { key: Key; data: Uint8Array } | undefined {
    return this.tree(BTRFS_ROOT_TREE_OBJECTID).first(
      { objectid: rootid, type: BTRFS_ROOT_ITEM_KEY, offset: 0n },
      { objectid: rootid, type: BTRFS_ROOT_ITEM_KEY, offset: (1n << 64n) - 1n },
    );
  }

  // ---- data space ----

  /** Reserve `numBytes` (rounded up to sectorsize) of contiguous data space in one block group; returns the logical bytenr. */
  allocData(numBytes: bigint | number): bigint {
    const ss = BigInt(this.sectorsize);
    const len = ((BigInt(numBytes) + ss - 1n) / ss) * ss;
    if (len <= 0n) throw new ImageError('IMAGE_BAD_ALLOC', `cannot allocate ${numBytes} bytes`);
    return this.space.alloc(BTRFS_BLOCK_GROUP_DATA, len, ss);
  }

  /**
   * Give back space from allocData that was never recorded in an extent item. It was free in the
   * committed state too, so it is reusable at once.
   */
  releaseData(bytenr: bigint, numBytes: bigint): void {
    this.space.release(bytenr, numBytes);
  }

  /** `from`: where the same bytes are in a file (BlockDevice.write). */
  writeData(bytenr: bigint, bytes: Uint8Array, from?: FileRange): void {
    for (const phys of this.chunks.toPhysical(bytenr, bytes.length)) this.device.write(phys, bytes, from);
  }

  readData(bytenr: bigint, len: number): Uint8Array {
    const phys = this.chunks.toPhysical(bytenr, len)[0]!;
    return this.device.read(phys, len);
  }

  // ---- chunks (chunk-alloc.ts) ----

  addChunk(type: bigint, minBytes: bigint, mkfs = false): ChunkInfo {
    return addChunk(this, type, minBytes, mkfs);
  }

  registerChunk(chunk: ChunkInfo): void {
    registerChunk(this, chunk);
  }

  /** fsid stamped into tree block headers (metadata_uuid when that feature is on). */
  headerFsid: Uint8Array;

  /** Set by create/open: the chunk tree uuid stamped into every tree block header and dev extent. */
  chunkTreeUuid: Uint8Array = new Uint8Array(16);
}

/** The fs tree and subvolume/snapshot trees (objectids 5 and 256 up to the negative reserved ids). */
export function isSubvolumeTree(id: bigint): boolean {
  return id === 5n || (id >= 256n && id <= (1n << 64n) - 1n - 256n);
}
