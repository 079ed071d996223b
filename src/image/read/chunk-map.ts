import { ImageError } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_PROFILE_MASK, type BtrfsChunk, type BtrfsKey, formatUuid,
} from '../structs.js';
import { type CopyLayout, chunkCopies } from './stripes.js';

/**
 * One chunk: logical [start, start+length) lives at `physical[i]` in each copy (1 for SINGLE, 2 for DUP;
 * with devices, every copy that can be read). `missing`: with devices, why no copy can be.
 */
export interface MappedChunk {
  start: bigint;
  length: bigint;
  type: bigint;
  physical: bigint[];
  /** What identifies the chunk's placement: a repeat of it (sys_chunk_array, chunk tree) must match. */
  sig: string;
  missing?: string;
}

/**
 * The devices of a multi-device filesystem, as a source that has them reads them (io/device-set.ts):
 * each copy of a chunk becomes a region of that source's offsets where its bytes read in a row, however
 * they are striped over the devices.
 */
export interface DeviceRegions {
  has(devid: bigint): boolean;
  /** Registers a copy `length` bytes long; returns the source offset its first byte reads at. */
  region(layout: CopyLayout, length: bigint): bigint;
}

/**
 * Logical→physical map. Of one image file alone only SINGLE and DUP chunks on its own device are read:
 * every other profile stripes or mirrors across devices. With `devices` (the image and the other
 * devices given with it) every profile's copies are read through them.
 */
export class ChunkMap {
  private chunks: MappedChunk[] = [];

  /** `numDevices`: what the superblock says, for the message when a chunk lives on another device. */
  constructor(private readonly devid: bigint, private readonly numDevices = 1n, private readonly devices?: DeviceRegions) {}

  add(key: BtrfsKey, chunk: BtrfsChunk): void {
    if (this.devices) {
      this.insert(key, chunk, this.throughDevices(key.offset, chunk, this.devices));
      return;
    }
    // A superblock may count devices this filesystem no longer has (progs' super-num-devs-mismatch): the
    // kernel mounts it when every chunk is on the devices present; so is it read here.
    for (const s of chunk.stripes) {
      if (s.devid !== this.devid) {
        throw new ImageError('IMAGE_MULTI_DEVICE', `chunk at logical ${key.offset} is on devid ${s.devid} (device ${formatUuid(s.dev_uuid)}), this image is devid ${this.devid} of ${this.numDevices} devices; give its other devices with --device FILE`, { offset: key.offset, command: 'btrfs_chunk' });
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
    const physical = chunk.stripes.map((s) => s.offset);
    this.insert(key, chunk, () => ({ start: key.offset, length: chunk.length, type: chunk.type, physical, sig: this.sig(chunk) }));
  }

  /** The chunk's placement: its stripes' offsets (and devids and profile, where devices are read). */
  private sig(chunk: BtrfsChunk): string {
    return this.devices ? `${chunk.type}:${chunk.stripes.map((s) => `${s.devid}@${s.offset}`).join(',')}` : chunk.stripes.map((s) => s.offset).join();
  }

  /** The chunk's copies as regions of the devices' source; none when a device of each is not there. */
  private throughDevices(logical: bigint, chunk: BtrfsChunk, devices: DeviceRegions): () => MappedChunk {
    const copies = chunkCopies(logical, chunk);
    return () => {
      const readable = copies.filter((l) => l.members.every((m) => devices.has(m.devid)));
      const absent = chunk.stripes.filter((s) => !devices.has(s.devid)).map((s) => `devid ${s.devid} (device ${formatUuid(s.dev_uuid)})`);
      return {
        start: logical, length: chunk.length, type: chunk.type, sig: this.sig(chunk),
        physical: readable.map((l) => devices.region(l, chunk.length)),
        ...(readable.length === 0 ? { missing: `its copies need ${[...new Set(absent)].join(', ')}, not given` } : {}),
      };
    };
  }

  /** Adds the chunk `make` maps unless it repeats one already there (regions are made once). */
  private insert(key: BtrfsKey, chunk: BtrfsChunk, make: () => MappedChunk): void {
    if (chunk.length === 0n) throw new ImageError('IMAGE_BAD_CHUNK', `chunk at logical ${key.offset} has length 0`, { offset: key.offset });
    const existing = this.find(key.offset);
    if (existing) {
      // The chunk tree repeats the sys_chunk_array entries; identical repeats are fine, conflicts are not.
      if (existing.start === key.offset && existing.length === chunk.length && existing.sig === this.sig(chunk)) return;
      throw new ImageError('IMAGE_BAD_CHUNK', `chunk at logical ${key.offset} overlaps chunk at ${existing.start}`, { offset: key.offset });
    }
    const c = make();
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
    // (`what` leads the error line as its command)
    if (c.missing) throw new ImageError('IMAGE_MISSING_DEVICE', `chunk ${c.start} cannot be read: ${c.missing} (--device FILE)`, { offset: logical, command: what });
    return c.physical.map((p) => p + (logical - c.start));
  }

  all(): readonly MappedChunk[] {
    return this.chunks;
  }
}
