import { ImageError } from '../../errors.js';
import { btrfsNameHash } from '../../util/crc32c.js';
import { nodeCrypto, randomBytes } from '../../util/lazy-builtins.js';
import type { BlockDevice } from '../device.js';
import {
  U64_MAX, BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM,
  BTRFS_BLOCK_GROUP_TREE_OBJECTID, BTRFS_CHUNK_TREE_OBJECTID, BTRFS_CSUM_TREE_OBJECTID, BTRFS_CSUM_TYPE_CRC32, BTRFS_DATA_RELOC_TREE_OBJECTID,
  BTRFS_DEV_TREE_OBJECTID, BTRFS_DIR_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID,
  BTRFS_FEATURE_COMPAT_RO_BLOCK_GROUP_TREE, BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE, BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE_VALID,
  BTRFS_FEATURE_INCOMPAT_EXTENDED_IREF, BTRFS_FEATURE_INCOMPAT_MIXED_BACKREF, BTRFS_FEATURE_INCOMPAT_MIXED_GROUPS, BTRFS_FEATURE_INCOMPAT_NO_HOLES,
  BTRFS_FEATURE_INCOMPAT_SKINNY_METADATA, BTRFS_FIRST_FREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID,
  BTRFS_FS_TREE_OBJECTID, BTRFS_FT_DIR, BTRFS_QUOTA_TREE_OBJECTID, BTRFS_INODE_ITEM_KEY, BTRFS_INODE_REF_KEY, BTRFS_INODE_ROOT_ITEM_INIT, BTRFS_MAGIC, BTRFS_ROOT_ITEM_KEY,
  BTRFS_ROOT_TREE_DIR_OBJECTID, BTRFS_ROOT_TREE_OBJECTID, BTRFS_UUID_KEY_SUBVOL, BTRFS_UUID_TREE_OBJECTID,
} from '../structs/constants.js';
import { type BtrfsInodeItem, type BtrfsTimespec, encodeDirItems, encodeInodeItem, encodeInodeRefs } from '../structs/fs-items.js';
import { csumAlgo } from '../structs/csum.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { type BtrfsRootItem, encodeRootItem, encodeUuidItem, uuidTreeKey } from '../structs/tree-items.js';
import { Filesystem, type GrowthOptions, SZ_1M } from './filesystem.js';

/** Options of createFilesystem, mirroring mkfs.btrfs. */
export interface CreateOptions extends GrowthOptions {
  label?: string;
  /** Filesystem uuid (16 bytes); random when absent (derived from uuidSeed when that is given). */
  fsid?: Uint8Array;
  /** Device uuid (16 bytes); random when absent (derived from uuidSeed when that is given). */
  devUuid?: Uint8Array;
  /**
   * Reproducible images: every uuid not given (fsid, device, chunk tree, fs tree) is derived from this
   * seed instead of drawn at random, so the same inputs make the same bytes.
   */
  uuidSeed?: string;
  sectorsize?: number;
  nodesize?: number;
  /** Metadata (and system) profile: 'dup' like mkfs.btrfs on one device, or 'single'. */
  metadataProfile?: 'single' | 'dup';
  /** Data profile: 'single' (mkfs.btrfs's default on one device) or 'dup' (two copies of every data extent). */
  dataProfile?: 'single' | 'dup';
  /** Creation time stamped on the root directories and the fs tree (default: now). */
  now?: BtrfsTimespec;
  /** Incompat features no-holes and extref (default: both on, as mkfs.btrfs 6.x). */
  noHoles?: boolean;
  extref?: boolean;
  /** compat_ro free-space-tree (default on); off: no free space tree, space cache v1 left to the kernel. */
  freeSpaceTree?: boolean;
  /** Incompat skinny-metadata (default on); off: tree block extents are EXTENT_ITEMs with a tree_block_info. */
  skinnyMetadata?: boolean;
  /** Quotas on (mkfs.btrfs -R quota): a quota tree whose qgroups every commit counts exactly (qgroup-count.ts). */
  quota?: boolean;
  /** compat_ro block-group-tree: block group items in tree 11 (block-group-tree.ts); needs the free space tree and no-holes. */
  blockGroupTree?: boolean;
  /** Mixed block groups (mkfs.btrfs -M): data and tree blocks in DATA|METADATA block groups; needs nodesize == sectorsize. */
  mixed?: boolean;
  /** BTRFS_CSUM_TYPE_* for tree blocks, superblocks and data (default crc32c); xxhash and blake2 need loadCsum() first. */
  csumType?: number;
}

const ZERO_TS: BtrfsTimespec = { sec: 0n, nsec: 0 };

export function randomUuid(): Uint8Array {
  const u = randomBytes(16);
  u[6] = (u[6]! & 0x0f) | 0x40; // version 4, like libuuid's uuid_generate
  u[8] = (u[8]! & 0x3f) | 0x80;
  return u;
}

/** A version-4-shaped uuid derived from `seed` and what it names (reproducible images). */
export function derivedUuid(seed: string, what: string): Uint8Array {
  const u = new Uint8Array(nodeCrypto().createHash('sha256').update(`btrfs-ts uuid\0${seed}\0${what}`).digest().subarray(0, 16));
  u[6] = (u[6]! & 0x0f) | 0x40;
  u[8] = (u[8]! & 0x3f) | 0x80;
  return u;
}

export function nowTimespec(): BtrfsTimespec {
  const ns = process.hrtime.bigint(); // monotonic: only for the nanosecond part
  const ms = Date.now();
  return { sec: BigInt(Math.floor(ms / 1000)), nsec: (ms % 1000) * 1_000_000 + Number(ns % 1_000_000n) };
}

export function dirInodeItem(generation: bigint, t: BtrfsTimespec, nbytes = 0n): BtrfsInodeItem {
  return {
    generation, transid: generation, size: 0n, nbytes, block_group: 0n, nlink: 1, uid: 0, gid: 0, mode: 0o40755,
    rdev: 0n, flags: 0n, sequence: 0n, atime: t, ctime: t, mtime: t, otime: t,
  };
}

/** A ROOT_ITEM with mkfs.btrfs's defaults; commit() fills in bytenr/level/generation. */
export function defaultRootItem(over: Partial<BtrfsRootItem> = {}, nodesize = 16384): BtrfsRootItem {
  return {
    inode: rootItemInode(nodesize, 0n),
    generation: 0n, root_dirid: 0n, bytenr: 0n, byte_limit: 0n, bytes_used: 0n, last_snapshot: 0n, flags: 0n, refs: 1,
    drop_progress: { objectid: 0n, type: 0, offset: 0n }, drop_level: 0, level: 0, generation_v2: 0n,
    uuid: new Uint8Array(16), parent_uuid: new Uint8Array(16), received_uuid: new Uint8Array(16),
    ctransid: 0n, otransid: 0n, stransid: 0n, rtransid: 0n, ctime: ZERO_TS, otime: ZERO_TS, stime: ZERO_TS, rtime: ZERO_TS,
    ...over,
  };
}

/** The name of the root tree directory's entry for the default subvolume. */
export const DEFAULT_ENTRY = new TextEncoder().encode('default');

/** The root tree directory's "default" entry: the subvolume a mount without subvol= shows. */
export function putDefaultEntry(fs: Filesystem, rootid: bigint): void {
  fs.tree(BTRFS_ROOT_TREE_OBJECTID).put(
    { objectid: BTRFS_ROOT_TREE_DIR_OBJECTID, type: BTRFS_DIR_ITEM_KEY, offset: BigInt(btrfsNameHash(DEFAULT_ENTRY)) },
    encodeDirItems([{ location: { objectid: rootid, type: BTRFS_ROOT_ITEM_KEY, offset: (1n << 64n) - 1n }, transid: 0n, type: BTRFS_FT_DIR, name: DEFAULT_ENTRY, data: new Uint8Array(0) }]),
  );
}

/**
 * The directory inode embedded in a ROOT_ITEM, as btrfs_create_tree / create_subvol write it. Subvolume
 * trees carry BTRFS_INODE_ROOT_ITEM_INIT: without it the kernel's btrfs_check_and_init_root_item treats
 * the item as written by an old kernel and clears the root flags (RDONLY) when it loads the subvolume.
 */
export function rootItemInode(nodesize: number, flags: bigint): BtrfsInodeItem {
  return { ...dirInodeItem(1n, ZERO_TS, BigInt(nodesize)), transid: 0n, size: 3n, flags };
}

/** ROOT_ITEM of a new subvolume tree (fs tree 5, subvolumes, snapshots): initialized for the kernel. */
export function subvolRootItem(nodesize: number, over: Partial<BtrfsRootItem> = {}): BtrfsRootItem {
  return defaultRootItem({ inode: rootItemInode(nodesize, BTRFS_INODE_ROOT_ITEM_INIT), root_dirid: BTRFS_FIRST_FREE_OBJECTID, ...over });
}

/** ROOT_ITEM the kernel's btrfs_create_tree writes (uuid tree, data reloc tree): everything zero but the tree. */
function zeroInodeRootItem(over: Partial<BtrfsRootItem> = {}): BtrfsRootItem {
  const zero: BtrfsInodeItem = { ...dirInodeItem(0n, ZERO_TS), transid: 0n, nlink: 0, mode: 0 };
  return defaultRootItem({ inode: zero, ...over });
}

/** Make an empty filesystem on `device` like mkfs.btrfs 6.x, committed (generation 1). */
export function createFilesystem(device: BlockDevice, opts: CreateOptions = {}): Filesystem {
  const sectorsize = opts.sectorsize ?? 4096;
  const nodesize = opts.nodesize ?? 16384;
  if (![4096, 8192, 16384, 32768, 65536].includes(sectorsize) || sectorsize > 65536) {
    throw new ImageError('IMAGE_BAD_OPTION', `unsupported sectorsize ${sectorsize}`);
  }
  if (nodesize < sectorsize || nodesize > 65536 || (nodesize & (nodesize - 1)) !== 0) {
    throw new ImageError('IMAGE_BAD_OPTION', `nodesize ${nodesize} must be a power of two between sectorsize and 65536`);
  }
  // the kernel refuses to mount a mixed filesystem whose tree blocks and sectors differ in size
  if (opts.mixed && nodesize !== sectorsize) throw new ImageError('IMAGE_BAD_OPTION', `mixed block groups need nodesize ${nodesize} == sectorsize ${sectorsize}`);
  const csumType = opts.csumType ?? BTRFS_CSUM_TYPE_CRC32;
  csumAlgo(csumType); // unknown or not loaded: refused before any byte is written
  const label = new TextEncoder().encode(opts.label ?? '');
  if (label.length > 255) throw new ImageError('IMAGE_BAD_OPTION', `label is ${label.length} bytes, at most 255`);
  const total = (device.size() / BigInt(sectorsize)) * BigInt(sectorsize);
  if (total < 16n * SZ_1M && opts.growable === false) throw new ImageError('IMAGE_TOO_SMALL', `device of ${total} bytes is too small`);
  const uuid = (what: string): Uint8Array => (opts.uuidSeed === undefined ? randomUuid() : derivedUuid(opts.uuidSeed, what));
  const fsid = opts.fsid ?? uuid('fsid');
  const now = opts.now ?? nowTimespec();
  const fst = opts.freeSpaceTree ?? true;
  const bgt = opts.blockGroupTree ?? false;
  if (bgt && (!fst || opts.noHoles === false)) throw new ImageError('IMAGE_BAD_OPTION', 'the block group tree needs the free space tree and no-holes');
  const sb: BtrfsSuperBlock = {
    csum: new Uint8Array(32), fsid, bytenr: 0n, flags: 0n, magic: BTRFS_MAGIC, generation: 0n, root: 0n, chunk_root: 0n,
    log_root: 0n, total_bytes: total, bytes_used: 0n, root_dir_objectid: BTRFS_ROOT_TREE_DIR_OBJECTID, num_devices: 1n,
    sectorsize, nodesize, leafsize: nodesize, stripesize: sectorsize, sys_chunk_array_size: 0, chunk_root_generation: 0n,
    compat_flags: 0n,
    compat_ro_flags: (fst ? BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE | BTRFS_FEATURE_COMPAT_RO_FREE_SPACE_TREE_VALID : 0n) |
      (bgt ? BTRFS_FEATURE_COMPAT_RO_BLOCK_GROUP_TREE : 0n),
    incompat_flags: BTRFS_FEATURE_INCOMPAT_MIXED_BACKREF | (opts.skinnyMetadata === false ? 0n : BTRFS_FEATURE_INCOMPAT_SKINNY_METADATA) |
      (opts.extref === false ? 0n : BTRFS_FEATURE_INCOMPAT_EXTENDED_IREF) | (opts.noHoles === false ? 0n : BTRFS_FEATURE_INCOMPAT_NO_HOLES) |
      (opts.mixed ? BTRFS_FEATURE_INCOMPAT_MIXED_GROUPS : 0n),
    csum_type: csumType, root_level: 0, chunk_root_level: 0, log_root_level: 0,
    dev_item: {
      devid: 1n, total_bytes: total, bytes_used: 0n, io_align: sectorsize, io_width: sectorsize, sector_size: sectorsize,
      type: 0n, generation: 0n, start_offset: 0n, dev_group: 0, seek_speed: 0, bandwidth: 0,
      uuid: opts.devUuid ?? uuid('device'), fsid,
    },
    // without a free space tree, mkfs.btrfs's -1: space cache v1 in use, nothing cached yet
    label, cache_generation: fst ? 0n : U64_MAX, uuid_tree_generation: 0n, metadata_uuid: fsid, nr_global_roots: 0n,
    sys_chunk_array: new Uint8Array(2048), super_roots: [],
  };
  const profile = (opts.metadataProfile ?? 'dup') === 'dup' ? BTRFS_BLOCK_GROUP_DUP : 0n;
  const fs = new Filesystem(device, sb, profile, opts);
  // new DATA chunks (the first below, and those a --rootdir fill adds) get two stripes; data writes go to both
  if (opts.dataProfile === 'dup') fs.dataProfile = BTRFS_BLOCK_GROUP_DUP;
  fs.chunkTreeUuid = uuid('chunk tree');
  const trees = [BTRFS_ROOT_TREE_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_CHUNK_TREE_OBJECTID, BTRFS_DEV_TREE_OBJECTID,
    BTRFS_FS_TREE_OBJECTID, BTRFS_CSUM_TREE_OBJECTID, BTRFS_UUID_TREE_OBJECTID, BTRFS_DATA_RELOC_TREE_OBJECTID];
  if (fst) trees.push(BTRFS_FREE_SPACE_TREE_OBJECTID);
  if (opts.quota) trees.push(BTRFS_QUOTA_TREE_OBJECTID);
  if (bgt) trees.push(BTRFS_BLOCK_GROUP_TREE_OBJECTID);
  fs.countsQgroups = !!opts.quota;
  for (const id of trees) fs.createTree(id);
  fs.addChunk(BTRFS_BLOCK_GROUP_SYSTEM, 0n, true);
  // mixed: this one chunk is DATA|METADATA (mixed-groups.ts), 8 MiB as mkfs.btrfs -M makes it
  fs.addChunk(BTRFS_BLOCK_GROUP_METADATA, 0n, true);
  if (!opts.mixed) fs.addChunk(BTRFS_BLOCK_GROUP_DATA, 0n, true);

  const gen = fs.transid;
  const root = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  const rootKey = (id: bigint) => ({ objectid: id, type: BTRFS_ROOT_ITEM_KEY, offset: 0n });
  // the same fields as mkfs.btrfs writes them (checked field by field against dump-tree -t root), except
  // that the fs tree is already initialized as the kernel leaves it after its first mount
  for (const id of [BTRFS_EXTENT_TREE_OBJECTID, BTRFS_DEV_TREE_OBJECTID, BTRFS_CSUM_TREE_OBJECTID, BTRFS_FREE_SPACE_TREE_OBJECTID, BTRFS_BLOCK_GROUP_TREE_OBJECTID]) {
    if (fs.hasTree(id)) root.put(rootKey(id), encodeRootItem(defaultRootItem({}, nodesize)));
  }
  root.put(rootKey(BTRFS_UUID_TREE_OBJECTID), encodeRootItem(zeroInodeRootItem()));
  // the quota tree as btrfs_quota_enable creates it (btrfs_create_tree); its items come with each commit
  if (opts.quota) root.put(rootKey(BTRFS_QUOTA_TREE_OBJECTID), encodeRootItem(zeroInodeRootItem()));
  const fsUuid = uuid('fs tree');
  root.put(rootKey(BTRFS_FS_TREE_OBJECTID), encodeRootItem(subvolRootItem(nodesize, { uuid: fsUuid, ctime: now, otime: now })));
  root.put(rootKey(BTRFS_DATA_RELOC_TREE_OBJECTID), encodeRootItem(zeroInodeRootItem({ root_dirid: BTRFS_FIRST_FREE_OBJECTID })));

  // the root tree's own directory, whose "default" entry names the default subvolume
  const dirId = BTRFS_ROOT_TREE_DIR_OBJECTID;
  root.put({ objectid: dirId, type: BTRFS_INODE_ITEM_KEY, offset: 0n }, encodeInodeItem(dirInodeItem(gen, now, BigInt(nodesize))));
  root.put({ objectid: dirId, type: BTRFS_INODE_REF_KEY, offset: dirId }, encodeInodeRefs([{ index: 0n, name: new TextEncoder().encode('..') }]));
  putDefaultEntry(fs, BTRFS_FS_TREE_OBJECTID);

  for (const [id, nbytes] of [[BTRFS_FS_TREE_OBJECTID, BigInt(nodesize)], [BTRFS_DATA_RELOC_TREE_OBJECTID, 0n]] as const) {
    const t = fs.tree(id);
    const ino = BTRFS_FIRST_FREE_OBJECTID;
    t.put({ objectid: ino, type: BTRFS_INODE_ITEM_KEY, offset: 0n }, encodeInodeItem(dirInodeItem(gen, now, nbytes)));
    t.put({ objectid: ino, type: BTRFS_INODE_REF_KEY, offset: ino }, encodeInodeRefs([{ index: 0n, name: new TextEncoder().encode('..') }]));
  }
  fs.tree(BTRFS_UUID_TREE_OBJECTID).put(uuidTreeKey(fsUuid, BTRFS_UUID_KEY_SUBVOL), encodeUuidItem([BTRFS_FS_TREE_OBJECTID]));
  fs.commit();
  return fs;
}

/**
 * mkfs --shrink: the device ends where its last device extent ends (rounded to the sector), as mkfs.btrfs
 * --shrink leaves it; the caller commits (the superblock carries the new size, and mirrors past it are not
 * written) and then truncates the file. Chunks are not moved: the size is what the chunks span.
 */
export function shrinkToChunks(fs: Filesystem): bigint {
  let end = SZ_1M;
  for (const c of fs.chunks.all()) for (const s of c.stripes) if (s.offset + c.length > end) end = s.offset + c.length;
  const ss = BigInt(fs.sectorsize);
  end = ((end + ss - 1n) / ss) * ss;
  fs.sb.dev_item.total_bytes = end;
  fs.sb.total_bytes = end;
  return end;
}
