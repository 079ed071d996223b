import { ImageError } from '../../errors.js';
import { LeReader, LeWriter } from './bytes.js';

/** Device and chunk structures: the logical→physical map lives here (chunk tree + sys_chunk_array). */

export interface BtrfsDevItem {
  devid: bigint;
  total_bytes: bigint;
  bytes_used: bigint;
  io_align: number;
  io_width: number;
  sector_size: number;
  type: bigint;
  generation: bigint;
  start_offset: bigint;
  dev_group: number;
  seek_speed: number;
  bandwidth: number;
  uuid: Uint8Array;
  fsid: Uint8Array;
}
export const BTRFS_DEV_ITEM_SIZE = 98;
export function readDevItem(r: LeReader): BtrfsDevItem {
  const devid = r.u64(), total_bytes = r.u64(), bytes_used = r.u64();
  const io_align = r.u32(), io_width = r.u32(), sector_size = r.u32();
  const type = r.u64(), generation = r.u64(), start_offset = r.u64(), dev_group = r.u32();
  const seek_speed = r.u8(), bandwidth = r.u8(), uuid = r.bytes(16), fsid = r.bytes(16);
  return { devid, total_bytes, bytes_used, io_align, io_width, sector_size, type, generation, start_offset, dev_group, seek_speed, bandwidth, uuid, fsid };
}
export function writeDevItem(w: LeWriter, x: BtrfsDevItem): void {
  w.u64(x.devid); w.u64(x.total_bytes); w.u64(x.bytes_used);
  w.u32(x.io_align); w.u32(x.io_width); w.u32(x.sector_size);
  w.u64(x.type); w.u64(x.generation); w.u64(x.start_offset); w.u32(x.dev_group);
  w.u8(x.seek_speed); w.u8(x.bandwidth); w.bytes(x.uuid, 16); w.bytes(x.fsid, 16);
}
export function decodeDevItem(b: Uint8Array, off = 0): BtrfsDevItem {
  return readDevItem(new LeReader(b, off, 'btrfs_dev_item'));
}
export function encodeDevItem(x: BtrfsDevItem): Uint8Array {
  const out = new Uint8Array(BTRFS_DEV_ITEM_SIZE);
  writeDevItem(new LeWriter(out), x);
  return out;
}

export interface BtrfsStripe {
  devid: bigint;
  offset: bigint;
  dev_uuid: Uint8Array;
}
export interface BtrfsChunk {
  length: bigint;
  owner: bigint;
  stripe_len: bigint;
  type: bigint;
  io_align: number;
  io_width: number;
  sector_size: number;
  sub_stripes: number;
  stripes: BtrfsStripe[];
}
export const BTRFS_CHUNK_ITEM_BASE_SIZE = 48;
export const BTRFS_STRIPE_SIZE = 32;
export function btrfsChunkItemSize(numStripes: number): number {
  return BTRFS_CHUNK_ITEM_BASE_SIZE + BTRFS_STRIPE_SIZE * numStripes;
}
export function readChunk(r: LeReader): BtrfsChunk {
  const length = r.u64(), owner = r.u64(), stripe_len = r.u64(), type = r.u64();
  const io_align = r.u32(), io_width = r.u32(), sector_size = r.u32();
  const num_stripes = r.u16(), sub_stripes = r.u16();
  if (num_stripes === 0) {
    throw new ImageError('IMAGE_BAD_CHUNK', 'btrfs_chunk: num_stripes is 0', { command: 'btrfs_chunk' });
  }
  const stripes: BtrfsStripe[] = [];
  for (let i = 0; i < num_stripes; i++) stripes.push({ devid: r.u64(), offset: r.u64(), dev_uuid: r.bytes(16) });
  return { length, owner, stripe_len, type, io_align, io_width, sector_size, sub_stripes, stripes };
}
export function writeChunk(w: LeWriter, x: BtrfsChunk): void {
  w.u64(x.length); w.u64(x.owner); w.u64(x.stripe_len); w.u64(x.type);
  w.u32(x.io_align); w.u32(x.io_width); w.u32(x.sector_size);
  w.u16(x.stripes.length); w.u16(x.sub_stripes);
  for (const s of x.stripes) {
    w.u64(s.devid); w.u64(s.offset); w.bytes(s.dev_uuid, 16);
  }
}
export function decodeChunk(b: Uint8Array, off = 0): BtrfsChunk {
  return readChunk(new LeReader(b, off, 'btrfs_chunk'));
}
export function encodeChunk(x: BtrfsChunk): Uint8Array {
  const out = new Uint8Array(btrfsChunkItemSize(x.stripes.length));
  writeChunk(new LeWriter(out), x);
  return out;
}

export interface BtrfsDevExtent {
  chunk_tree: bigint;
  chunk_objectid: bigint;
  chunk_offset: bigint;
  length: bigint;
  chunk_tree_uuid: Uint8Array;
}
export function decodeDevExtent(b: Uint8Array): BtrfsDevExtent {
  const r = new LeReader(b, 0, 'btrfs_dev_extent');
  return { chunk_tree: r.u64(), chunk_objectid: r.u64(), chunk_offset: r.u64(), length: r.u64(), chunk_tree_uuid: r.bytes(16) };
}
export function encodeDevExtent(x: BtrfsDevExtent): Uint8Array {
  const out = new Uint8Array(48);
  const w = new LeWriter(out);
  w.u64(x.chunk_tree); w.u64(x.chunk_objectid); w.u64(x.chunk_offset); w.u64(x.length); w.bytes(x.chunk_tree_uuid, 16);
  return out;
}
