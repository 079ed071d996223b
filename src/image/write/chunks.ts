import { ImageError } from '../../errors.js';
import { BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_PROFILE_MASK, BTRFS_SUPER_MIRROR_MAX, btrfsSbOffset } from '../structs/constants.js';

/**
 * Logical → physical mapping of the chunks of a single-device filesystem. Only SINGLE and DUP profiles
 * exist on one device (RAID profiles need several), which keeps the mapping a plain offset per stripe.
 */
export const BTRFS_STRIPE_LEN = 65536n;

export interface ChunkStripe {
  devid: bigint;
  offset: bigint;
  dev_uuid: Uint8Array;
}

export interface ChunkInfo {
  logical: bigint;
  length: bigint;
  type: bigint;
  stripes: ChunkStripe[];
}

export class ChunkMap {
  private chunks: ChunkInfo[] = [];

  all(): readonly ChunkInfo[] {
    return this.chunks;
  }

  add(c: ChunkInfo): void {
    if ((c.type & BTRFS_BLOCK_GROUP_PROFILE_MASK & ~BTRFS_BLOCK_GROUP_DUP) !== 0n) {
      throw new ImageError('IMAGE_UNSUPPORTED_PROFILE', `chunk at ${c.logical} uses a multi-device profile (type 0x${c.type.toString(16)})`);
    }
    if (this.lookup(c.logical) || this.lookup(c.logical + c.length - 1n)) {
      throw new ImageError('IMAGE_CHUNK_OVERLAP', `chunk at ${c.logical} overlaps another chunk`);
    }
    this.chunks.push(c);
    this.chunks.sort((a, b) => (a.logical < b.logical ? -1 : 1));
  }

  lookup(logical: bigint): ChunkInfo | undefined {
    let lo = 0;
    let hi = this.chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = this.chunks[mid]!;
      if (c.logical + c.length <= logical) lo = mid + 1;
      else hi = mid;
    }
    const c = this.chunks[lo];
    return c && c.logical <= logical ? c : undefined;
  }

  /** Physical offsets of every copy of [logical, logical+len); the range must not cross a chunk end. */
  toPhysical(logical: bigint, len: number | bigint): bigint[] {
    const c = this.lookup(logical);
    if (!c || logical + BigInt(len) > c.logical + c.length) {
      throw new ImageError('IMAGE_UNMAPPED', `logical range ${logical}+${len} is not inside one chunk`, { offset: logical });
    }
    return c.stripes.map((s) => s.offset + (logical - c.logical));
  }

  /** Where the next chunk goes in logical space: after every existing chunk (find_next_chunk). */
  nextLogical(min: bigint): bigint {
    const last = this.chunks[this.chunks.length - 1];
    const end = last ? last.logical + last.length : 0n;
    return end > min ? end : min;
  }

  /**
   * Logical ranges of `c` that hold superblock copies on some stripe, as the kernel's
   * exclude_super_stripes computes them: the whole BTRFS_STRIPE_LEN window around each copy. Nothing
   * may be allocated there, since the superblock writes would overwrite it.
   */
  superExcluded(c: ChunkInfo): Array<[bigint, bigint]> {
    const out: Array<[bigint, bigint]> = [];
    for (let m = 0; m < BTRFS_SUPER_MIRROR_MAX; m++) {
      const phys = btrfsSbOffset(m);
      for (const s of c.stripes) {
        if (phys < s.offset || phys >= s.offset + c.length) continue;
        const rel = ((phys - s.offset) / BTRFS_STRIPE_LEN) * BTRFS_STRIPE_LEN;
        const start = c.logical + rel;
        const end = start + BTRFS_STRIPE_LEN < c.logical + c.length ? start + BTRFS_STRIPE_LEN : c.logical + c.length;
        out.push([start, end]);
      }
    }
    return out;
  }
}
