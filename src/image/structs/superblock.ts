import { ImageError } from '../../errors.js';
import { LeReader, LeWriter } from './bytes.js';
import { type BtrfsChunk, btrfsChunkItemSize, readChunk, readDevItem, type BtrfsDevItem, writeChunk, writeDevItem } from './chunk-items.js';
import { BTRFS_CHUNK_ITEM_KEY, BTRFS_SUPER_INFO_SIZE, BTRFS_SYSTEM_CHUNK_ARRAY_SIZE } from './constants.js';
import { setBlockCsum } from './csum.js';
import { type BtrfsKey, readDiskKey, writeDiskKey } from './fs-items.js';

/** struct btrfs_super_block: 4096 bytes, checksummed over bytes 32..4096 like a tree block. */

export interface BtrfsRootBackup {
  tree_root: bigint; tree_root_gen: bigint;
  chunk_root: bigint; chunk_root_gen: bigint;
  extent_root: bigint; extent_root_gen: bigint;
  fs_root: bigint; fs_root_gen: bigint;
  dev_root: bigint; dev_root_gen: bigint;
  csum_root: bigint; csum_root_gen: bigint;
  total_bytes: bigint; bytes_used: bigint; num_devices: bigint;
  tree_root_level: number; chunk_root_level: number; extent_root_level: number;
  fs_root_level: number; dev_root_level: number; csum_root_level: number;
}
const BACKUP_U64 = ['tree_root', 'tree_root_gen', 'chunk_root', 'chunk_root_gen', 'extent_root', 'extent_root_gen', 'fs_root', 'fs_root_gen',
  'dev_root', 'dev_root_gen', 'csum_root', 'csum_root_gen', 'total_bytes', 'bytes_used', 'num_devices'] as const;
const BACKUP_U8 = ['tree_root_level', 'chunk_root_level', 'extent_root_level', 'fs_root_level', 'dev_root_level', 'csum_root_level'] as const;
export const BTRFS_ROOT_BACKUP_SIZE = 168;

export interface BtrfsSuperBlock {
  csum: Uint8Array;
  fsid: Uint8Array;
  bytenr: bigint;
  flags: bigint;
  magic: bigint;
  generation: bigint;
  root: bigint;
  chunk_root: bigint;
  log_root: bigint;
  total_bytes: bigint;
  bytes_used: bigint;
  root_dir_objectid: bigint;
  num_devices: bigint;
  sectorsize: number;
  nodesize: number;
  /** __unused_leafsize: mkfs still sets it to nodesize. */
  leafsize: number;
  stripesize: number;
  sys_chunk_array_size: number;
  chunk_root_generation: bigint;
  compat_flags: bigint;
  compat_ro_flags: bigint;
  incompat_flags: bigint;
  csum_type: number;
  root_level: number;
  chunk_root_level: number;
  log_root_level: number;
  dev_item: BtrfsDevItem;
  label: Uint8Array;
  cache_generation: bigint;
  uuid_tree_generation: bigint;
  metadata_uuid: Uint8Array;
  nr_global_roots: bigint;
  /** Raw 2048 bytes; use decodeSysChunkArray / encodeSysChunkArray for the (key, chunk) pairs. */
  sys_chunk_array: Uint8Array;
  super_roots: BtrfsRootBackup[];
}

export function decodeSuperblock(b: Uint8Array): BtrfsSuperBlock {
  const r = new LeReader(b, 0, 'btrfs_super_block');
  r.need(BTRFS_SUPER_INFO_SIZE);
  const csum = r.bytes(32), fsid = r.bytes(16), bytenr = r.u64(), flags = r.u64(), magic = r.u64();
  const generation = r.u64(), root = r.u64(), chunk_root = r.u64(), log_root = r.u64();
  r.skip(8); // __unused_log_root_transid
  const total_bytes = r.u64(), bytes_used = r.u64(), root_dir_objectid = r.u64(), num_devices = r.u64();
  const sectorsize = r.u32(), nodesize = r.u32(), leafsize = r.u32(), stripesize = r.u32(), sys_chunk_array_size = r.u32();
  const chunk_root_generation = r.u64(), compat_flags = r.u64(), compat_ro_flags = r.u64(), incompat_flags = r.u64();
  const csum_type = r.u16(), root_level = r.u8(), chunk_root_level = r.u8(), log_root_level = r.u8();
  const dev_item = readDevItem(r);
  const label = r.bytes(256), cache_generation = r.u64(), uuid_tree_generation = r.u64();
  const metadata_uuid = r.bytes(16), nr_global_roots = r.u64();
  r.pos = 811;
  const sys_chunk_array = r.bytes(BTRFS_SYSTEM_CHUNK_ARRAY_SIZE);
  const super_roots: BtrfsRootBackup[] = [];
  for (let i = 0; i < 4; i++) {
    const bk = {} as Record<string, bigint | number>;
    for (const f of BACKUP_U64) bk[f] = r.u64();
    r.skip(32);
    for (const f of BACKUP_U8) bk[f] = r.u8();
    r.skip(10);
    super_roots.push(bk as unknown as BtrfsRootBackup);
  }
  return {
    csum, fsid, bytenr, flags, magic, generation, root, chunk_root, log_root, total_bytes, bytes_used, root_dir_objectid,
    num_devices, sectorsize, nodesize, leafsize, stripesize, sys_chunk_array_size, chunk_root_generation, compat_flags,
    compat_ro_flags, incompat_flags, csum_type, root_level, chunk_root_level, log_root_level, dev_item, label,
    cache_generation, uuid_tree_generation, metadata_uuid, nr_global_roots, sys_chunk_array, super_roots,
  };
}

/** Encodes all 4096 bytes and stores their checksum of the superblock's own csum_type. */
export function encodeSuperblock(sb: BtrfsSuperBlock): Uint8Array {
  const out = new Uint8Array(BTRFS_SUPER_INFO_SIZE);
  const w = new LeWriter(out);
  w.skip(32);
  w.bytes(sb.fsid, 16); w.u64(sb.bytenr); w.u64(sb.flags); w.u64(sb.magic);
  w.u64(sb.generation); w.u64(sb.root); w.u64(sb.chunk_root); w.u64(sb.log_root); w.u64(0n);
  w.u64(sb.total_bytes); w.u64(sb.bytes_used); w.u64(sb.root_dir_objectid); w.u64(sb.num_devices);
  w.u32(sb.sectorsize); w.u32(sb.nodesize); w.u32(sb.leafsize); w.u32(sb.stripesize); w.u32(sb.sys_chunk_array_size);
  w.u64(sb.chunk_root_generation); w.u64(sb.compat_flags); w.u64(sb.compat_ro_flags); w.u64(sb.incompat_flags);
  w.u16(sb.csum_type); w.u8(sb.root_level); w.u8(sb.chunk_root_level); w.u8(sb.log_root_level);
  writeDevItem(w, sb.dev_item);
  w.bytes(sb.label, 256); w.u64(sb.cache_generation); w.u64(sb.uuid_tree_generation);
  w.bytes(sb.metadata_uuid, 16); w.u64(sb.nr_global_roots);
  w.pos = 811;
  w.bytes(sb.sys_chunk_array, BTRFS_SYSTEM_CHUNK_ARRAY_SIZE);
  for (let i = 0; i < 4; i++) {
    const bk = sb.super_roots[i];
    const start = w.pos;
    if (bk) {
      for (const f of BACKUP_U64) w.u64(bk[f]);
      w.skip(32);
      for (const f of BACKUP_U8) w.u8(bk[f]);
    }
    w.pos = start + BTRFS_ROOT_BACKUP_SIZE;
  }
  setBlockCsum(out, sb.csum_type);
  return out;
}

export interface SysChunk {
  key: BtrfsKey;
  chunk: BtrfsChunk;
}
/** sys_chunk_array: (disk key, chunk with stripes) pairs packed back to back, `size` bytes used. */
export function decodeSysChunkArray(arr: Uint8Array, size: number): SysChunk[] {
  if (size > arr.length) {
    throw new ImageError('IMAGE_BAD_SUPERBLOCK', `sys_chunk_array_size ${size} exceeds ${arr.length}`, { command: 'btrfs_super_block' });
  }
  const r = new LeReader(arr.subarray(0, size), 0, 'sys_chunk_array');
  const out: SysChunk[] = [];
  while (r.pos < size) {
    const key = readDiskKey(r);
    if (key.type !== BTRFS_CHUNK_ITEM_KEY) {
      throw new ImageError('IMAGE_BAD_SUPERBLOCK', `sys_chunk_array: key type ${key.type} at ${r.pos - 17}, expected CHUNK_ITEM`, { command: 'sys_chunk_array' });
    }
    out.push({ key, chunk: readChunk(r) });
  }
  return out;
}
export function encodeSysChunkArray(chunks: SysChunk[]): { array: Uint8Array; size: number } {
  const size = chunks.reduce((n, c) => n + 17 + btrfsChunkItemSize(c.chunk.stripes.length), 0);
  if (size > BTRFS_SYSTEM_CHUNK_ARRAY_SIZE) {
    throw new ImageError('IMAGE_SYS_ARRAY_FULL', `system chunks need ${size} bytes, sys_chunk_array holds ${BTRFS_SYSTEM_CHUNK_ARRAY_SIZE}`);
  }
  const array = new Uint8Array(BTRFS_SYSTEM_CHUNK_ARRAY_SIZE);
  const w = new LeWriter(array);
  for (const c of chunks) {
    writeDiskKey(w, c.key);
    writeChunk(w, c.chunk);
  }
  return { array, size };
}
