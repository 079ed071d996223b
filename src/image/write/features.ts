import { cannotModify } from '../../errors.js';
import {
  BTRFS_FEATURE_COMPAT_RO_BLOCK_GROUP_TREE, BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE,
  BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE_VALID, BTRFS_FEATURE_COMPAT_RO_VERITY, BTRFS_FEATURE_INCOMPAT_BIG_METADATA,
  BTRFS_FEATURE_INCOMPAT_COMPRESS_LZO, BTRFS_FEATURE_INCOMPAT_COMPRESS_ZSTD, BTRFS_FEATURE_INCOMPAT_DEFAULT_SUBVOL,
  BTRFS_FEATURE_INCOMPAT_EXTENDED_IREF, BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2, BTRFS_FEATURE_INCOMPAT_METADATA_UUID,
  BTRFS_FEATURE_INCOMPAT_MIXED_BACKREF, BTRFS_FEATURE_INCOMPAT_MIXED_GROUPS, BTRFS_FEATURE_INCOMPAT_NO_HOLES,
  BTRFS_FEATURE_INCOMPAT_RAID1C34, BTRFS_FEATURE_INCOMPAT_RAID56, BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE,
  BTRFS_FEATURE_INCOMPAT_SIMPLE_QUOTA, BTRFS_FEATURE_INCOMPAT_SKINNY_METADATA, BTRFS_FEATURE_INCOMPAT_ZONED,
} from '../structs/constants.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';

/**
 * Which on-disk features the image writer can honour. Rule: never write an item the image's incompat /
 * compat_ro flags do not allow. A feature is either written correctly (the flag changes what is written:
 * holes, extended refs, compression flags), or the image is refused on open, before any byte is written.
 * Issue 12 adds layouts by moving entries from REQUIRED/REFUSED into the writable set.
 */

/** Incompat features whose presence changes nothing the writer does, or that it follows. */
const WRITABLE_INCOMPAT =
  BTRFS_FEATURE_INCOMPAT_MIXED_BACKREF | BTRFS_FEATURE_INCOMPAT_DEFAULT_SUBVOL | BTRFS_FEATURE_INCOMPAT_COMPRESS_LZO |
  BTRFS_FEATURE_INCOMPAT_COMPRESS_ZSTD | BTRFS_FEATURE_INCOMPAT_BIG_METADATA |
  // without it: no INODE_EXTREF items, a name that does not fit the INODE_REF is refused (EMLINK)
  BTRFS_FEATURE_INCOMPAT_EXTENDED_IREF |
  // without it: tree block extents are EXTENT_ITEMs with a btrfs_tree_block_info (tree-block-item.ts)
  BTRFS_FEATURE_INCOMPAT_SKINNY_METADATA |
  // without it: every hole of a file gets an explicit hole extent (holes.ts)
  BTRFS_FEATURE_INCOMPAT_NO_HOLES |
  BTRFS_FEATURE_INCOMPAT_METADATA_UUID |
  // data and tree blocks in DATA|METADATA block groups: mixed-groups.ts
  BTRFS_FEATURE_INCOMPAT_MIXED_GROUPS;

/** Incompat features the writer cannot do without: [bit, what is refused when the image lacks it]. */
const REQUIRED_INCOMPAT: Array<[bigint, string]> = [
  [BTRFS_FEATURE_INCOMPAT_MIXED_BACKREF, 'it lacks mixed-backref (old-style back references are not written)'],
];

const INCOMPAT_NAMES: Array<[bigint, string]> = [
  [BTRFS_FEATURE_INCOMPAT_RAID56, 'raid56'],
  [BTRFS_FEATURE_INCOMPAT_RAID1C34, 'raid1c34'],
  [BTRFS_FEATURE_INCOMPAT_ZONED, 'zoned'],
  [BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2, 'extent-tree-v2'],
  [BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE, 'raid-stripe-tree'],
  [BTRFS_FEATURE_INCOMPAT_SIMPLE_QUOTA, 'simple quotas (squota)'],
];

/** compat_ro features the writer keeps correct: the free space tree (when present), the block group tree, verity (never written). */
const WRITABLE_COMPAT_RO =
  BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE | BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE_VALID | BTRFS_FEATURE_COMPAT_RO_VERITY |
  // block group items in their own tree: block-group-tree.ts
  BTRFS_FEATURE_COMPAT_RO_BLOCK_GROUP_TREE;

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** Throws IMAGE_* with a one-line reason when the writer must not modify an image with these flags. */
export function checkWritableFeatures(sb: BtrfsSuperBlock): void {
  const refuse = (code: string, why: string): never => {
    throw cannotModify(code, why, { command: 'btrfs_super_block' });
  };
  for (const [bit, why] of REQUIRED_INCOMPAT) if (!(sb.incompat_flags & bit)) refuse('IMAGE_UNSUPPORTED_FEATURE', why);
  const badIncompat = sb.incompat_flags & ~WRITABLE_INCOMPAT;
  if (badIncompat) {
    const named = INCOMPAT_NAMES.filter(([bit]) => badIncompat & bit).map(([, n]) => n);
    refuse('IMAGE_UNSUPPORTED_FEATURE', `it uses ${named.length ? named.join(', ') : `unknown incompat features ${hex(badIncompat)}`}`);
  }
  // without a free space tree the image has a v1 space cache (or none): space-cache-v1.ts invalidates it.
  // A tree being built (the flag without _VALID: a mount with space_cache=v2 that did not finish) is refused.
  if (hasFreeSpaceTree(sb) && !(sb.compat_ro_flags & BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE_VALID)) {
    refuse('IMAGE_NO_FREE_SPACE_TREE', 'its free space tree is not marked valid (a conversion to space_cache=v2 did not finish)');
  }
  const badRo = sb.compat_ro_flags & ~WRITABLE_COMPAT_RO;
  if (badRo) refuse('IMAGE_UNSUPPORTED_FEATURE', `it uses unknown compat_ro features ${hex(badRo)}`);
}

/** Does the image keep its free space in a free space tree (else: a v1 space cache, or nothing)? */
export function hasFreeSpaceTree(sb: BtrfsSuperBlock): boolean {
  return (sb.compat_ro_flags & BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE) !== 0n;
}

/** May the writer store a name that does not fit its inode's INODE_REF item as an INODE_EXTREF? */
export function hasExtref(sb: BtrfsSuperBlock): boolean {
  return (sb.incompat_flags & BTRFS_FEATURE_INCOMPAT_EXTENDED_IREF) !== 0n;
}

/** Are holes implicit (NO_HOLES), or must every hole be a file extent item? */
export function hasNoHoles(sb: BtrfsSuperBlock): boolean {
  return (sb.incompat_flags & BTRFS_FEATURE_INCOMPAT_NO_HOLES) !== 0n;
}
