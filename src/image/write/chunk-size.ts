import { BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM } from '../structs/constants.js';
import { BTRFS_STRIPE_LEN } from './chunks.js';

/**
 * How big a new chunk is, as mkfs.btrfs sizes the first chunks and the kernel every later one. Small
 * images matter: a chunk far bigger than the kernel would make (64 MiB of data on a 256 MiB device)
 * leaves `btrfs balance` no room to relocate it (ENOSPC), since relocation first allocates a chunk of
 * the kernel's size next to the old one.
 */
const SZ_1M = 1n << 20n;
const SZ_16M = 16n * SZ_1M;
const SZ_32M = 32n * SZ_1M;
const SZ_256M = 256n * SZ_1M;
const SZ_1G = 1024n * SZ_1M;

/**
 * Usable length of a new chunk of `type` (DATA, METADATA or SYSTEM) with `copies` stripes (2 = DUP) on
 * a device of `totalBytes`. `mkfs`: the chunks mkfs.btrfs 6.2 creates (data and system 8 MiB,
 * metadata as btrfs-progs' init_alloc_chunk_ctl_policy_regular + decide_stripe_size_regular size it:
 * 256 MiB (1 GiB above 50 GiB), split over the stripes when over 10% of the device, at least 32 MiB); otherwise the kernel's allocator
 * (init_alloc_chunk_ctl_policy_regular + decide_stripe_size_regular in volumes.c: at most 10% of the
 * device rounded up to 16 MiB, metadata at most 256 MiB (1 GiB above 50 GiB), data at most 1 GiB per
 * stripe, system at most 32 MiB).
 */
export function chunkLength(type: bigint, copies: number, totalBytes: bigint, mkfs: boolean): bigint {
  const tenth = totalBytes / 10n;
  const metaMax = totalBytes > 50n * SZ_1G ? SZ_1G : SZ_256M;
  if (mkfs) {
    // mkfs.btrfs starts with 8 MiB of data (whatever the device size) and of system; the room this
    // leaves unallocated on small devices is what balance and scrub later allocate their chunks in
    if (type !== BTRFS_BLOCK_GROUP_METADATA) return 8n * SZ_1M;
    // a chunk over 10% of the device is split over its stripes (5% each for DUP), but kept >= 32 MiB
    const perStripe = metaMax > tenth ? tenth / BigInt(copies) : metaMax;
    return roundDown(max(perStripe, SZ_32M), BTRFS_STRIPE_LEN);
  }
  // DATA|METADATA (mixed block groups) is sized as data, as the kernel tests the DATA bit first
  const typeMax = type & BTRFS_BLOCK_GROUP_DATA ? SZ_1G : type === BTRFS_BLOCK_GROUP_SYSTEM ? SZ_32M : metaMax;
  const maxChunk = min(tenth, typeMax);
  const stripe = min(roundUp(maxChunk, SZ_16M), typeMax);
  return roundDown(stripe, BTRFS_STRIPE_LEN);
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function roundUp(v: bigint, a: bigint): bigint {
  return ((v + a - 1n) / a) * a;
}

function roundDown(v: bigint, a: bigint): bigint {
  return (v / a) * a;
}
