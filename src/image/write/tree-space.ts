import { BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_CHUNK_TREE_OBJECTID } from '../structs/constants.js';
import type { TreeBlockSpace } from '../engine/store.js';
import type { BlockGroupSpace } from './block-group-space.js';

/**
 * Tree block space: nodesize blocks, first fit, in METADATA block groups (SYSTEM ones for the chunk
 * tree, as the kernel places it), out of the block groups' free sets (block-group-space.ts), which
 * leave out every block of the committed state. A block freed in the transaction that allocated it is
 * free again at once; a committed one is pinned until the commit that drops it is durable.
 */
export class MetadataSpace implements TreeBlockSpace {
  constructor(private readonly space: BlockGroupSpace, private readonly nodesize: number) {}

  alloc(owner: bigint, _level: number): bigint {
    const n = BigInt(this.nodesize);
    const type = owner === BTRFS_CHUNK_TREE_OBJECTID ? BTRFS_BLOCK_GROUP_SYSTEM : BTRFS_BLOCK_GROUP_METADATA;
    // a new metadata chunk gets room for many blocks, not one
    return this.space.alloc(type, n, n, 64n * n);
  }

  free(bytenr: bigint, _owner: bigint, _level: number, fresh: boolean): void {
    const n = BigInt(this.nodesize);
    if (fresh) this.space.release(bytenr, n);
    else this.space.pin(bytenr, n);
  }
}
