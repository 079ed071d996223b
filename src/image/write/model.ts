import { ImageError } from '../../errors.js';
import type { BlockDevice } from '../device.js';
import { BTree } from '../engine/ctree.js';
import { dropTree } from '../engine/bulk.js';
import { BlockStore, type CowHooks, type TreeBlockSpace } from '../engine/store.js';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_CSUM_TREE_OBJECTID, BTRFS_DATA_RELOC_TREE_OBJECTID, BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_TREE_OBJECTID,
  BTRFS_UUID_TREE_OBJECTID,
} from '../structs/constants.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { addChunk, type ChunkOwner, registerChunk } from './chunk-alloc.js';
import { type ChunkInfo, ChunkMap } from './chunks.js';
import { ItemMap, type Key } from './item-map.js';
import { PageStore } from './page-store.js';
import { RangeSet } from './ranges.js';
import { MetadataSpace, type SpaceOwner } from './tree-space.js';
import { TreeHandle, TreeState } from './tree-state.js';

/**
 * The state of a single-device btrfs filesystem being changed: superblock, chunks, trees, data space.
 * Filesystem (filesystem.ts) adds the commit and snapshots on top; the modules those use (commit.ts,
 * extents.ts, holes.ts, cow-refs.ts) see only this model, so nothing imports its own importer.
 *
 * Filesystem-wide trees are item maps (ItemMap) paged under one PageStore budget; subvolume trees are
 * copy-on-write trees in the BlockStore. File data is never held: callers allocate data extents
 * (allocData), write them straight to the device (writeData) and record them with the helpers in
 * extents.ts.
 */
export interface GrowthOptions {
  /** May the device grow when chunks run out of room? (default true) */
  growable?: boolean;
  /** Hard limit on the device size in bytes; exceeding it is an ImageError (IMAGE_FULL). */
  maxSize?: bigint;
  /** Memory budget (and spill file) for the items of every tree; default: 48 MiB, cold pages in memory. */
  pageStore?: PageStore;
}

export class FilesystemModel implements ChunkOwner, SpaceOwner {
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
  /** Data whose checksums were added since the last commit: the commit merges their csum items (extents.ts). */
  csumTouched = new RangeSet();
  /** Logical ranges of every tree block of the last committed state: never overwritten by a commit. */
  committedBusy = new RangeSet();
  /** Shared by the item maps of every tree. */
  readonly pageStore: PageStore;
  /** Metadata space of the copy-on-write trees. */
  readonly space: MetadataSpace;
  /** Decoded blocks of the copy-on-write trees, under the same budget as the item maps. */
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
    this.pageStore = growth.pageStore ?? new PageStore();
    this.headerFsid = sb.fsid;
    this.space = new MetadataSpace(this);
    const refs = cow(this);
    this.store = new BlockStore({
      nodesize: sb.nodesize, ident: this, csumType: sb.csum_type, device, space: refs, hooks: refs, transid: sb.generation + 1n,
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
    const t = isCowTree(rootid)
      ? new TreeState(rootid, { engine: () => BTree.create(this.store, rootid) }, false)
      : new TreeState(rootid, new ItemMap(this.pageStore), true);
    this.trees.set(rootid, t);
    return new TreeHandle(t);
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

/**
 * Trees kept as copy-on-write trees (engine/): subvolume trees, and the trees nothing derives at commit
 * whose blocks never move with the others — csum, uuid, data relocation. The root, extent, free space,
 * chunk and dev trees are item maps the commit lays out whole.
 */
export function isCowTree(id: bigint): boolean {
  return isSubvolumeTree(id) || id === BTRFS_CSUM_TREE_OBJECTID || id === BTRFS_UUID_TREE_OBJECTID || id === BTRFS_DATA_RELOC_TREE_OBJECTID;
}

/** The fs tree and subvolume/snapshot trees (objectids 5 and 256 up to the negative reserved ids). */
export function isSubvolumeTree(id: bigint): boolean {
  return id === 5n || (id >= 256n && id <= (1n << 64n) - 1n - 256n);
}
