import { BTRFS_BLOCK_GROUP_METADATA } from '../structs/constants.js';
import type { TreeBlockSpace } from '../engine/store.js';
import type { ChunkMap } from './chunks.js';
import { RangeSet } from './ranges.js';

/**
 * Metadata space for the copy-on-write trees: nodesize blocks, first fit, inside METADATA block groups,
 * outside the superblock stripes, outside every block of the committed state (a crash before the next
 * superblock must find those intact) and outside what this transaction already uses. A block freed in
 * the transaction that allocated it is free again at once; a committed one stays excluded (it is in
 * the committed set) until the commit that drops it is durable.
 */
export interface SpaceOwner {
  readonly chunks: ChunkMap;
  readonly nodesize: number;
  /** Logical ranges of every tree block of the last committed state. */
  readonly committedBusy: RangeSet;
  /** Adds a METADATA chunk with at least `minBytes` usable (may grow the device). */
  addChunk(type: bigint, minBytes: bigint): unknown;
}

export class MetadataSpace implements TreeBlockSpace {
  /** Blocks handed out in this transaction and not freed. */
  taken = new RangeSet();
  private pool: RangeSet | undefined;
  private chunkCount = -1;

  constructor(private readonly fs: SpaceOwner) {}

  private freePool(): RangeSet {
    const chunks = this.fs.chunks.all();
    if (this.pool && this.chunkCount === chunks.length) return this.pool;
    const free = new RangeSet();
    for (const c of chunks) {
      if ((c.type & BTRFS_BLOCK_GROUP_METADATA) === 0n) continue;
      free.add(c.logical, c.logical + c.length);
      for (const [s, e] of this.fs.chunks.superExcluded(c)) free.remove(s, e);
    }
    for (const [s, e] of this.fs.committedBusy) free.remove(s, e);
    for (const [s, e] of this.taken) free.remove(s, e);
    this.pool = free;
    this.chunkCount = chunks.length;
    return free;
  }

  alloc(): bigint {
    const n = BigInt(this.fs.nodesize);
    let at = this.freePool().findFree(n, n);
    if (at === undefined) {
      this.fs.addChunk(BTRFS_BLOCK_GROUP_METADATA, 64n * n);
      at = this.freePool().findFree(n, n);
      if (at === undefined) throw new Error('internal: no metadata block after adding a chunk');
    }
    this.pool!.remove(at, at + n);
    this.taken.add(at, at + n);
    return at;
  }

  free(bytenr: bigint, _owner: bigint, _level: number, fresh: boolean): void {
    if (!fresh) return;
    const n = BigInt(this.fs.nodesize);
    this.taken.remove(bytenr, bytenr + n);
    this.freePool().add(bytenr, bytenr + n);
  }

  /** A commit made the taken blocks part of the committed state (and freed the pinned ones). */
  committed(): void {
    this.taken = new RangeSet();
    this.pool = undefined;
  }

  /** The transaction was abandoned: what it took is free again. */
  abandon(): void {
    this.committed();
  }
}
