import { cannotModify } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_METADATA, BTRFS_FEATURE_INCOMPAT_MIXED_GROUPS,
} from '../structs/constants.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';

/**
 * Mixed block groups (mkfs.btrfs -M, incompat MIXED_GROUPS): data extents and tree blocks share block
 * groups of type DATA|METADATA; only the chunk tree keeps its SYSTEM block groups. The kernel then has
 * one space_info for both (space-info.c) and allocates a new chunk as DATA|METADATA whichever of the
 * two asked for it (btrfs_get_alloc_profile with the mixed flag). Everything else is shared as it is:
 * the free space tree and each block group's `used` count data and tree blocks alike, which the block
 * group space (block-group-space.ts) already does per block group. The kernel and mkfs.btrfs require
 * nodesize == sectorsize on such filesystems (tree blocks and data sectors share the same alignment);
 * an image that breaks it is refused on open.
 */
const MIXED = BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_METADATA;

export function hasMixedGroups(sb: BtrfsSuperBlock): boolean {
  return (sb.incompat_flags & BTRFS_FEATURE_INCOMPAT_MIXED_GROUPS) !== 0n;
}

/** The block group type a new chunk asked for as `type` (DATA, METADATA or SYSTEM) gets. */
export function chunkTypeFor(sb: BtrfsSuperBlock, type: bigint): bigint {
  return hasMixedGroups(sb) && type & MIXED ? MIXED : type;
}

/** Open-time check of a mixed image: the geometry the kernel requires (fs/btrfs/disk-io.c, open_ctree). */
export function checkMixedGroups(sb: BtrfsSuperBlock): void {
  if (!hasMixedGroups(sb)) return;
  if (sb.nodesize !== sb.sectorsize) {
    throw cannotModify('IMAGE_BAD_SUPERBLOCK', `it has mixed block groups with nodesize ${sb.nodesize} != sectorsize ${sb.sectorsize}`, { command: 'btrfs_super_block' });
  }
}
