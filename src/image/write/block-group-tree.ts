import { cannotModify } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_TREE_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FEATURE_COMPAT_RO_BLOCK_GROUP_TREE,
  BTRFS_FEATURE_INCOMPAT_NO_HOLES,
} from '../structs/constants.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { hasFreeSpaceTree } from './features.js';

/**
 * The block group tree (compat_ro BLOCK_GROUP_TREE, mkfs.btrfs -O block-group-tree, kernel 6.1+): the
 * BLOCK_GROUP_ITEMs live in a tree of their own (objectid 11) instead of among the extent tree's items,
 * so a mount reads a few blocks instead of seeking through the whole extent tree. The items themselves
 * are the same; only the tree that holds them differs, so the writer asks this module where they are
 * (chunk-alloc.ts inserts a new chunk's item there, block-group-space.ts updates `used` there, the open
 * checks look each one up there). The kernel requires the free space tree and no-holes with it
 * (btrfs_check_features: "block-group-tree feature requires free-space-tree and no-holes").
 */
export function hasBlockGroupTree(sb: Pick<BtrfsSuperBlock, 'compat_ro_flags'>): boolean {
  return (sb.compat_ro_flags & BTRFS_FEATURE_COMPAT_RO_BLOCK_GROUP_TREE) !== 0n;
}

/** The tree holding the BLOCK_GROUP_ITEMs. */
export function blockGroupTreeId(sb: Pick<BtrfsSuperBlock, 'compat_ro_flags'>): bigint {
  return hasBlockGroupTree(sb) ? BTRFS_BLOCK_GROUP_TREE_OBJECTID : BTRFS_EXTENT_TREE_OBJECTID;
}

/** Open-time check: the features the kernel requires beside the block group tree. */
export function checkBlockGroupTree(sb: BtrfsSuperBlock): void {
  if (!hasBlockGroupTree(sb)) return;
  if (!hasFreeSpaceTree(sb) || !(sb.incompat_flags & BTRFS_FEATURE_INCOMPAT_NO_HOLES)) {
    throw cannotModify('IMAGE_UNSUPPORTED_FEATURE', 'it has a block group tree without the free space tree and no-holes the kernel requires with it', { command: 'btrfs_super_block' });
  }
}
