import { ImageError } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_PROFILE_MASK, type BtrfsChunk, type BtrfsKey, formatUuid,
} from '../structs.js';

/** One chunk: logical [start, start+length) lives at `physical[i]` on each copy (1 for SINGLE, 2 for DUP). */
export interface MappedChunk {
  start: bigint;
  length: bigint;
  type: bigint;
  physical: bigint[];
}

/**
 * Logical→physical map for a single-device filesystem. Only SINGLE and DUP are accepted: every other
 * profile stripes or mirrors across devices, which a single image cannot hold consistently.
 */
export class ChunkMap {
  private chunks: MappedChunk[] = [];

  /** `numDevices`: what the superblock says, for the message when a chunk lives on another device. */
  constructor(private readonly devid: bigint, private readonly numDevices = 1n) {}

  add(key: BtrfsKey, chunk: BtrfsChunk): void {
    // A superblock may count devices this filesystem no longer has (progs' super-num-devs-mismatch): the
    // kernel mounts it when every chunk is on the devices present; so is it read here.
    for (const s of chunk.stripes) {
      if (s.devid !== this.devid) {
        throw new ImageError('IMAGE_MULTI_DEVICE', `chunk at logical ${key.offset} is on devid ${s.devid} (device ${formatUuid(s.dev_uuid)}), this image is devid ${this.devid} of ${this.numDevices} devices; only single-device filesystems are read`, { offset: key.offset, command: 'btrfs_chunk' });
      }
    }
    const profile = chunk.type & BTRFS_BLOCK_GROUP_PROFILE_MASK;
    if (profile !== 0n && profile !== BTRFS_BLOCK_GROUP_DUP) {
      throw new ImageError('IMAGE_UNSUPPORTED_PROFILE', `chunk at logical ${key.offset} has profile flags 0x${profile.toString(16)}; only SINGLE and DUP are supported`, { offset: key.offset, command: 'btrfs_chunk' });
    }
    const expect = profile === 0n ? 1 : 2;
    if (chunk.stripes.length !== expect) {
      throw new ImageError('IMAGE_BAD_CHUNK', `chunk at logical ${key.offset} has ${chunk.stripes.length} stripes, expected ${expect}`, { offset: key.offset, command: 'btrfs_chunk' });
    }
    if (chunk.length === 0n) throw new ImageError('IMAGE_BAD_CHUNK', `chunk at logical ${key.offset} has length 0`, { offset: key.offset });
    const c: MappedChunk = { start: key.offset, length: chunk.length, type: chunk.type, physical: chunk.stripes.map((s) => s.offset) };
    const existing = this.find(c.start);
    if (existing) {
      // The chunk tree repeats the sys_chunk_array entries; identical repeats are fine, conflicts are not.
      if (existing.start === c.start && existing.length === c.length && existing.physical.join() === c.physical.join()) return;
      throw new ImageError('IMAGE_BAD_CHUNK', `chunk at logical ${key.offset} overlaps chunk at ${existing.start}`, { offset: key.offset });
    }
    this.chunks.push(c);
    this.chunks.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const i = this.chunks.indexOf(c);
    const next = this.chunks[i + 1];
    if (next && c.start + c.length > next.start) {
      throw new ImageError('IMAGE_BAD_CHUNK', `chunk at logical ${key.offset} overlaps chunk at ${next.start}`, { offset: key.offset });
    }
  }

  find(logical: bigint): MappedChunk | undefined {
    let lo = 0, hi = this.chunks.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const c = this.chunks[mid]!;
      if (logical < c.start) hi = mid - 1;
      else if (logical >= c.start + c.length) lo = mid + 1;
      else return c;
    }
    return undefined;
  }

  /** Physical offsets of every copy of [logical, logical+len); the range must lie inside one chunk. */
  map(logical: bigint, len: number, what: string): bigint[] {
    const c = this.find(logical);
    if (!c || logical + BigInt(len) > c.start + c.length) {
      throw new ImageError('IMAGE_UNMAPPED', `${what} at logical ${logical} (+${len}) is not inside any chunk`, { offset: logical, command: what });
    }
    return c.physical.map((p) => p + (logical - c.start));
  }

  all(): readonly MappedChunk[] {
    return this.chunks;
  }
}
