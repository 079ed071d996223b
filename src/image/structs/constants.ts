/**
 * On-disk constants of btrfs, named as in kernel-shared/uapi/btrfs_tree.h and uapi/btrfs.h so they can be
 * grepped against the reference. Every objectid is a bigint: the "negative" ones are u64 values near 2^64
 * and only survive as bigints.
 */
const neg = (n: bigint): bigint => (1n << 64n) - n;

/** The largest u64: the open end of key ranges (objectid, offset). */
export const U64_MAX = (1n << 64n) - 1n;

export const BTRFS_MAGIC = 0x4d5f53665248425fn; // "_BHRfS_M" little-endian
export const BTRFS_MAX_LEVEL = 8;
export const BTRFS_NAME_LEN = 255;
export const BTRFS_LINK_MAX = 65535;
export const BTRFS_CSUM_SIZE = 32;
export const BTRFS_FSID_SIZE = 16;
export const BTRFS_UUID_SIZE = 16;
export const BTRFS_LABEL_SIZE = 256;
export const BTRFS_SYSTEM_CHUNK_ARRAY_SIZE = 2048;
export const BTRFS_NUM_BACKUP_ROOTS = 4;
export const BTRFS_SUPER_INFO_OFFSET = 65536n;
export const BTRFS_SUPER_INFO_SIZE = 4096;
/** Superblock copies live at 64 KiB, 64 MiB and 256 GiB (btrfs_sb_offset: 16 KiB << 12*mirror). */
export const BTRFS_SUPER_MIRROR_MAX = 3;
export function btrfsSbOffset(mirror: number): bigint {
  return mirror === 0 ? BTRFS_SUPER_INFO_OFFSET : (16n * 1024n) << BigInt(12 * mirror);
}
export const BTRFS_MAX_METADATA_BLOCKSIZE = 65536;

// objectids
export const BTRFS_DEV_STATS_OBJECTID = 0n;
export const BTRFS_ROOT_TREE_OBJECTID = 1n;
export const BTRFS_EXTENT_TREE_OBJECTID = 2n;
export const BTRFS_CHUNK_TREE_OBJECTID = 3n;
export const BTRFS_DEV_TREE_OBJECTID = 4n;
export const BTRFS_FS_TREE_OBJECTID = 5n;
export const BTRFS_ROOT_TREE_DIR_OBJECTID = 6n;
export const BTRFS_CSUM_TREE_OBJECTID = 7n;
export const BTRFS_QUOTA_TREE_OBJECTID = 8n;
export const BTRFS_UUID_TREE_OBJECTID = 9n;
export const BTRFS_FREE_SPACE_TREE_OBJECTID = 10n;
export const BTRFS_BLOCK_GROUP_TREE_OBJECTID = 11n;
export const BTRFS_RAID_STRIPE_TREE_OBJECTID = 12n;
export const BTRFS_BALANCE_OBJECTID = neg(4n);
export const BTRFS_ORPHAN_OBJECTID = neg(5n);
export const BTRFS_TREE_LOG_OBJECTID = neg(6n);
export const BTRFS_TREE_LOG_FIXUP_OBJECTID = neg(7n);
export const BTRFS_TREE_RELOC_OBJECTID = neg(8n);
export const BTRFS_DATA_RELOC_TREE_OBJECTID = neg(9n);
export const BTRFS_EXTENT_CSUM_OBJECTID = neg(10n);
export const BTRFS_FREE_SPACE_OBJECTID = neg(11n);
export const BTRFS_FREE_INO_OBJECTID = neg(12n);
export const BTRFS_MULTIPLE_OBJECTIDS = neg(255n);
export const BTRFS_FIRST_FREE_OBJECTID = 256n;
export const BTRFS_LAST_FREE_OBJECTID = neg(256n);
export const BTRFS_FIRST_CHUNK_TREE_OBJECTID = 256n;
export const BTRFS_DEV_ITEMS_OBJECTID = 1n;
export const BTRFS_BTREE_INODE_OBJECTID = 1n;
export const BTRFS_EMPTY_SUBVOL_DIR_OBJECTID = 2n;

// key types
export const BTRFS_INODE_ITEM_KEY = 1;
export const BTRFS_INODE_REF_KEY = 12;
export const BTRFS_INODE_EXTREF_KEY = 13;
export const BTRFS_XATTR_ITEM_KEY = 24;
export const BTRFS_VERITY_DESC_ITEM_KEY = 36;
export const BTRFS_VERITY_MERKLE_ITEM_KEY = 37;
export const BTRFS_ORPHAN_ITEM_KEY = 48;
export const BTRFS_DIR_LOG_ITEM_KEY = 60;
export const BTRFS_DIR_LOG_INDEX_KEY = 72;
export const BTRFS_DIR_ITEM_KEY = 84;
export const BTRFS_DIR_INDEX_KEY = 96;
export const BTRFS_EXTENT_DATA_KEY = 108;
export const BTRFS_EXTENT_CSUM_KEY = 128;
export const BTRFS_ROOT_ITEM_KEY = 132;
export const BTRFS_ROOT_BACKREF_KEY = 144;
export const BTRFS_ROOT_REF_KEY = 156;
export const BTRFS_EXTENT_ITEM_KEY = 168;
export const BTRFS_METADATA_ITEM_KEY = 169;
export const BTRFS_EXTENT_OWNER_REF_KEY = 172;
export const BTRFS_TREE_BLOCK_REF_KEY = 176;
export const BTRFS_EXTENT_DATA_REF_KEY = 178;
export const BTRFS_SHARED_BLOCK_REF_KEY = 182;
export const BTRFS_SHARED_DATA_REF_KEY = 184;
export const BTRFS_BLOCK_GROUP_ITEM_KEY = 192;
export const BTRFS_FREE_SPACE_INFO_KEY = 198;
export const BTRFS_FREE_SPACE_EXTENT_KEY = 199;
export const BTRFS_FREE_SPACE_BITMAP_KEY = 200;
export const BTRFS_DEV_EXTENT_KEY = 204;
export const BTRFS_DEV_ITEM_KEY = 216;
export const BTRFS_CHUNK_ITEM_KEY = 228;
export const BTRFS_RAID_STRIPE_KEY = 230;
export const BTRFS_QGROUP_STATUS_KEY = 240;
export const BTRFS_QGROUP_INFO_KEY = 242;
export const BTRFS_QGROUP_LIMIT_KEY = 244;
export const BTRFS_QGROUP_RELATION_KEY = 246;
export const BTRFS_BALANCE_ITEM_KEY = 248;
export const BTRFS_TEMPORARY_ITEM_KEY = 248;
export const BTRFS_DEV_STATS_KEY = 249;
export const BTRFS_PERSISTENT_ITEM_KEY = 249;
export const BTRFS_DEV_REPLACE_KEY = 250;
export const BTRFS_UUID_KEY_SUBVOL = 251;
export const BTRFS_UUID_KEY_RECEIVED_SUBVOL = 252;
export const BTRFS_STRING_ITEM_KEY = 253;

// dir item types
export const BTRFS_FT_UNKNOWN = 0;
export const BTRFS_FT_REG_FILE = 1;
export const BTRFS_FT_DIR = 2;
export const BTRFS_FT_CHRDEV = 3;
export const BTRFS_FT_BLKDEV = 4;
export const BTRFS_FT_FIFO = 5;
export const BTRFS_FT_SOCK = 6;
export const BTRFS_FT_SYMLINK = 7;
export const BTRFS_FT_XATTR = 8;

/** The BTRFS_FT_* a directory entry records for an inode of `mode` (fs_umode_to_ftype); BTRFS_FT_UNKNOWN for none. */
export function btrfsFileType(mode: number): number {
  switch (mode & 0o170000) {
    case 0o100000: return BTRFS_FT_REG_FILE;
    case 0o040000: return BTRFS_FT_DIR;
    case 0o020000: return BTRFS_FT_CHRDEV;
    case 0o060000: return BTRFS_FT_BLKDEV;
    case 0o010000: return BTRFS_FT_FIFO;
    case 0o140000: return BTRFS_FT_SOCK;
    case 0o120000: return BTRFS_FT_SYMLINK;
    default: return BTRFS_FT_UNKNOWN;
  }
}

// inode flags (btrfs_inode_item.flags)
export const BTRFS_INODE_NODATASUM = 1n << 0n;
export const BTRFS_INODE_NODATACOW = 1n << 1n;
export const BTRFS_INODE_READONLY = 1n << 2n;
export const BTRFS_INODE_NOCOMPRESS = 1n << 3n;
export const BTRFS_INODE_PREALLOC = 1n << 4n;
export const BTRFS_INODE_SYNC = 1n << 5n;
export const BTRFS_INODE_IMMUTABLE = 1n << 6n;
export const BTRFS_INODE_APPEND = 1n << 7n;
export const BTRFS_INODE_NODUMP = 1n << 8n;
export const BTRFS_INODE_NOATIME = 1n << 9n;
export const BTRFS_INODE_DIRSYNC = 1n << 10n;
export const BTRFS_INODE_COMPRESS = 1n << 11n;
export const BTRFS_INODE_ROOT_ITEM_INIT = 1n << 31n;
/** Read-only-compat inode flags live in the upper 32 bits of the on-disk flags field. */
export const BTRFS_INODE_RO_VERITY = 1n << 32n;

// tree block header flags
export const BTRFS_HEADER_FLAG_WRITTEN = 1n << 0n;
export const BTRFS_HEADER_FLAG_RELOC = 1n << 1n;
export const BTRFS_BACKREF_REV_SHIFT = 56n;
export const BTRFS_OLD_BACKREF_REV = 0n;
export const BTRFS_MIXED_BACKREF_REV = 1n;

// superblock flags
export const BTRFS_SUPER_FLAG_ERROR = 1n << 2n;
export const BTRFS_SUPER_FLAG_SEEDING = 1n << 32n;
export const BTRFS_SUPER_FLAG_METADUMP = 1n << 33n;
export const BTRFS_SUPER_FLAG_METADUMP_V2 = 1n << 34n;
export const BTRFS_SUPER_FLAG_CHANGING_FSID = 1n << 35n;
export const BTRFS_SUPER_FLAG_CHANGING_FSID_V2 = 1n << 36n;

// feature bits
export const BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE = 1n << 0n;
export const BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE_VALID = 1n << 1n;
export const BTRFS_FEATURE_COMPAT_RO_VERITY = 1n << 2n;
export const BTRFS_FEATURE_COMPAT_RO_BLOCK_GROUP_TREE = 1n << 3n;
export const BTRFS_FEATURE_INCOMPAT_MIXED_BACKREF = 1n << 0n;
export const BTRFS_FEATURE_INCOMPAT_DEFAULT_SUBVOL = 1n << 1n;
export const BTRFS_FEATURE_INCOMPAT_MIXED_GROUPS = 1n << 2n;
export const BTRFS_FEATURE_INCOMPAT_COMPRESS_LZO = 1n << 3n;
export const BTRFS_FEATURE_INCOMPAT_COMPRESS_ZSTD = 1n << 4n;
export const BTRFS_FEATURE_INCOMPAT_BIG_METADATA = 1n << 5n;
export const BTRFS_FEATURE_INCOMPAT_EXTENDED_IREF = 1n << 6n;
export const BTRFS_FEATURE_INCOMPAT_RAID56 = 1n << 7n;
export const BTRFS_FEATURE_INCOMPAT_SKINNY_METADATA = 1n << 8n;
export const BTRFS_FEATURE_INCOMPAT_NO_HOLES = 1n << 9n;
export const BTRFS_FEATURE_INCOMPAT_METADATA_UUID = 1n << 10n;
export const BTRFS_FEATURE_INCOMPAT_RAID1C34 = 1n << 11n;
export const BTRFS_FEATURE_INCOMPAT_ZONED = 1n << 12n;
export const BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2 = 1n << 13n;
export const BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE = 1n << 14n;
export const BTRFS_FEATURE_INCOMPAT_SIMPLE_QUOTA = 1n << 16n;

// block group / chunk type flags
export const BTRFS_BLOCK_GROUP_DATA = 1n << 0n;
export const BTRFS_BLOCK_GROUP_SYSTEM = 1n << 1n;
export const BTRFS_BLOCK_GROUP_METADATA = 1n << 2n;
export const BTRFS_BLOCK_GROUP_RAID0 = 1n << 3n;
export const BTRFS_BLOCK_GROUP_RAID1 = 1n << 4n;
export const BTRFS_BLOCK_GROUP_DUP = 1n << 5n;
export const BTRFS_BLOCK_GROUP_RAID10 = 1n << 6n;
export const BTRFS_BLOCK_GROUP_RAID5 = 1n << 7n;
export const BTRFS_BLOCK_GROUP_RAID6 = 1n << 8n;
export const BTRFS_BLOCK_GROUP_RAID1C3 = 1n << 9n;
export const BTRFS_BLOCK_GROUP_RAID1C4 = 1n << 10n;
export const BTRFS_BLOCK_GROUP_TYPE_MASK = BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_SYSTEM | BTRFS_BLOCK_GROUP_METADATA;
export const BTRFS_BLOCK_GROUP_PROFILE_MASK =
  BTRFS_BLOCK_GROUP_RAID0 | BTRFS_BLOCK_GROUP_RAID1 | BTRFS_BLOCK_GROUP_DUP | BTRFS_BLOCK_GROUP_RAID10 |
  BTRFS_BLOCK_GROUP_RAID5 | BTRFS_BLOCK_GROUP_RAID6 | BTRFS_BLOCK_GROUP_RAID1C3 | BTRFS_BLOCK_GROUP_RAID1C4;
export const BTRFS_AVAIL_ALLOC_BIT_SINGLE = 1n << 48n;

// extent item flags
export const BTRFS_EXTENT_FLAG_DATA = 1n << 0n;
export const BTRFS_EXTENT_FLAG_TREE_BLOCK = 1n << 1n;
export const BTRFS_BLOCK_FLAG_FULL_BACKREF = 1n << 8n;

// root item flags
export const BTRFS_ROOT_SUBVOL_RDONLY = 1n << 0n;
export const BTRFS_ROOT_SUBVOL_DEAD = 1n << 48n;

// file extents
export const BTRFS_FILE_EXTENT_INLINE = 0;
export const BTRFS_FILE_EXTENT_REG = 1;
export const BTRFS_FILE_EXTENT_PREALLOC = 2;
export const BTRFS_COMPRESS_NONE = 0;
export const BTRFS_COMPRESS_ZLIB = 1;
export const BTRFS_COMPRESS_LZO = 2;
export const BTRFS_COMPRESS_ZSTD = 3;

// checksums
export const BTRFS_CSUM_TYPE_CRC32 = 0;
export const BTRFS_CSUM_TYPE_XXHASH = 1;
export const BTRFS_CSUM_TYPE_SHA256 = 2;
export const BTRFS_CSUM_TYPE_BLAKE2 = 3;

// free space tree
export const BTRFS_FREE_SPACE_USING_BITMAPS = 1;

// qgroups
export const BTRFS_QGROUP_LEVEL_SHIFT = 48n;
export const BTRFS_QGROUP_STATUS_FLAG_ON = 1n << 0n;
export const BTRFS_QGROUP_STATUS_FLAG_RESCAN = 1n << 1n;
export const BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT = 1n << 2n;
export const BTRFS_QGROUP_STATUS_VERSION = 1n;
