import { ImageError } from '../../errors.js';
import { crc32cBtrfs, crcPiecesRaw } from '../../util/crc32c.js';
import { btrfsCsumFromRaw, CRC_SECTOR } from '../../util/crc32c-combine.js';
import { nodeCrypto } from '../../util/lazy-builtins.js';
import { BTRFS_CSUM_SIZE, BTRFS_CSUM_TYPE_BLAKE2, BTRFS_CSUM_TYPE_CRC32, BTRFS_CSUM_TYPE_SHA256, BTRFS_CSUM_TYPE_XXHASH } from './constants.js';

/**
 * The one place that knows the four btrfs checksum algorithms (superblock csum_type). Tree blocks,
 * superblocks and data sectors all go through here, selected by the image's csum_type.
 *
 * Implementations were chosen by measurement (docs/performance.md, "Checksum algorithms"): our slice-16
 * CRC32C, node:crypto for SHA-256 (OpenSSL, hardware SHA where the CPU has it), hash-wasm for xxhash64
 * and BLAKE2b-256. node:crypto's blake2b512 cannot serve: BLAKE2b puts the digest length in its parameter
 * block, so BLAKE2b-256 is not a truncated BLAKE2b-512. hash-wasm instantiates WebAssembly
 * asynchronously, so those two are loaded by loadCsum() before first use (the reader and the writer's
 * open do it from the superblock; mkfs does it for --csum); crc32c and sha256 are always ready.
 */
export interface CsumAlgo {
  /** BTRFS_CSUM_TYPE_*. */
  readonly type: number;
  /** mkfs.btrfs --csum spelling. */
  readonly name: string;
  /** Bytes stored per checksum (in a block's csum field, or per sector in an EXTENT_CSUM item). */
  readonly size: number;
  /** Stores the checksum of `data` at out[at .. at+size). */
  digestInto(data: Uint8Array, out: Uint8Array, at: number): void;
}

const SPELLINGS: Record<string, number> = {
  crc32c: BTRFS_CSUM_TYPE_CRC32, crc32: BTRFS_CSUM_TYPE_CRC32,
  xxhash: BTRFS_CSUM_TYPE_XXHASH, xxhash64: BTRFS_CSUM_TYPE_XXHASH,
  sha256: BTRFS_CSUM_TYPE_SHA256,
  blake2: BTRFS_CSUM_TYPE_BLAKE2, blake2b: BTRFS_CSUM_TYPE_BLAKE2,
};
const NAMES = ['crc32c', 'xxhash', 'sha256', 'blake2'];
const SIZES = [4, 8, 32, 32];

/** The csum_type for a mkfs.btrfs --csum spelling (crc32c, xxhash, sha256, blake2 and their aliases). */
export function csumTypeByName(name: string): number | undefined {
  return SPELLINGS[name.toLowerCase()];
}
/** Name of a csum_type for messages: "xxhash", or "csum_type 9" when unknown. */
export function csumTypeName(type: number): string {
  return NAMES[type] ?? `csum_type ${type}`;
}
/** Checksum size of a csum_type, or undefined when unknown. */
export function csumSizeOf(type: number): number | undefined {
  return SIZES[type];
}

const crc32c: CsumAlgo = {
  type: BTRFS_CSUM_TYPE_CRC32, name: 'crc32c', size: 4,
  digestInto(data, out, at) {
    const c = crc32cBtrfs(data);
    out[at] = c & 0xff; out[at + 1] = (c >>> 8) & 0xff; out[at + 2] = (c >>> 16) & 0xff; out[at + 3] = c >>> 24;
  },
};
const sha256: CsumAlgo = {
  type: BTRFS_CSUM_TYPE_SHA256, name: 'sha256', size: 32,
  digestInto(data, out, at) {
    out.set(nodeCrypto().createHash('sha256').update(data).digest(), at);
  },
};

const loaded = new Map<number, CsumAlgo>([[crc32c.type, crc32c], [sha256.type, sha256]]);

interface WasmHasher {
  init(): unknown;
  update(data: Uint8Array): unknown;
  digest(outputType: 'binary'): Uint8Array;
}
function wasmAlgo(type: number, h: WasmHasher, littleEndian: boolean): CsumAlgo {
  const size = SIZES[type]!;
  return {
    type, name: NAMES[type]!, size,
    digestInto(data, out, at) {
      h.init();
      h.update(data);
      const d = h.digest('binary');
      // xxhash64's digest is a u64: hash-wasm gives it big-endian, the kernel stores it little-endian
      if (littleEndian) for (let i = 0; i < size; i++) out[at + i] = d[size - 1 - i]!;
      else out.set(d, at);
    },
  };
}

/** Makes csum_type `type` ready for csumAlgo(); an unknown type is IMAGE_UNSUPPORTED_CSUM. */
export async function loadCsum(type: number): Promise<CsumAlgo> {
  const have = loaded.get(type);
  if (have) return have;
  if (type !== BTRFS_CSUM_TYPE_XXHASH && type !== BTRFS_CSUM_TYPE_BLAKE2) throw unsupported(type);
  // imported only when an image needs it: most images are crc32c, and start-up stays light
  const hw = await import('hash-wasm');
  const algo = type === BTRFS_CSUM_TYPE_XXHASH
    ? wasmAlgo(type, await hw.createXXHash64(0, 0), true)
    : wasmAlgo(type, await hw.createBLAKE2b(256), false);
  loaded.set(type, algo);
  return algo;
}

/** The algorithm of csum_type `type`, already made ready by loadCsum (crc32c and sha256 always are). */
export function csumAlgo(type: number): CsumAlgo {
  const a = loaded.get(type);
  if (a) return a;
  if (csumSizeOf(type) === undefined) throw unsupported(type);
  // a programming error, not bad input: every path that meets a csum_type loads it first
  throw new ImageError('IMAGE_CSUM_NOT_LOADED', `${csumTypeName(type)} checksums used before loadCsum(${type})`);
}

function unsupported(type: number): ImageError {
  return new ImageError('IMAGE_UNSUPPORTED_CSUM', `csum_type ${type} is not one of crc32c, xxhash, sha256, blake2`);
}

/** Checksum of bytes 32..end stored in csum[0..size), the rest of the 32-byte field zero: tree blocks and superblocks. */
export function setBlockCsum(block: Uint8Array, csumType: number): void {
  block.fill(0, 0, BTRFS_CSUM_SIZE);
  csumAlgo(csumType).digestInto(block.subarray(BTRFS_CSUM_SIZE), block, 0);
}
const scratch = new Uint8Array(BTRFS_CSUM_SIZE);

/**
 * The first sector of data[0, len) (sectors of `sectorsize`, the last one may be short) without a stored
 * checksum (`have[i]` 0) or not matching it (`sums`: algo.size bytes per sector, back to back); -1 when
 * every sector matches. Data extents: the reader's checks and the send's reading thread (extent-worker.ts).
 * `raw` (crc32c with 4 KiB sectors): filled with each matching sector's raw CRC (crc32c-combine.ts), which
 * a send combines into its command CRC — in the same pass, from the checksum just computed.
 */
export function firstBadSector(algo: CsumAlgo, data: Uint8Array, len: number, sectorsize: number, sums: Uint8Array, have: Uint8Array, raw?: Uint32Array): number {
  if (algo.type === BTRFS_CSUM_TYPE_CRC32) return firstBadCrc32c(data, len, sectorsize, sums, have, sectorsize === CRC_SECTOR ? raw : undefined);
  const cs = algo.size;
  for (let i = 0; i < have.length; i++) {
    if (!have[i]) return i;
    algo.digestInto(data.subarray(i * sectorsize, Math.min(len, (i + 1) * sectorsize)), scratch, 0);
    for (let j = 0; j < cs; j++) if (scratch[j] !== sums[i * cs + j]) return i;
  }
  return -1;
}

/**
 * firstBadSector for crc32c, the common case: the computed checksum compared as a number with the stored
 * little-endian one (no digest bytes written and compared one by one, ~140k sectors in a large send).
 */
function firstBadCrc32c(data: Uint8Array, len: number, sectorsize: number, sums: Uint8Array, have: Uint8Array, raw: Uint32Array | undefined): number {
  const n = have.length;
  if (sectorsize === CRC_SECTOR && len === n * CRC_SECTOR) {
    // whole 4 KiB sectors (nearly every read): their raw CRCs in one call (the addon's: one pass, no view
    // and no call per sector — ~7,500 of each for 30 MB), then each turned into the stored form and compared
    const r = raw ?? sectorScratch(n);
    crcPiecesRaw(data.subarray(0, len), CRC_SECTOR, r.length === n ? r : r.subarray(0, n));
    for (let i = 0; i < n; i++) {
      const j = i * 4;
      if (!have[i] || btrfsCsumFromRaw(r[i]!) !== (sums[j]! | (sums[j + 1]! << 8) | (sums[j + 2]! << 16) | (sums[j + 3]! << 24)) >>> 0) return i;
    }
    return -1;
  }
  for (let i = 0; i < n; i++) {
    if (!have[i]) return i;
    const c = crc32cBtrfs(data.subarray(i * sectorsize, Math.min(len, (i + 1) * sectorsize)));
    const j = i * 4;
    if (c !== (sums[j]! | (sums[j + 1]! << 8) | (sums[j + 2]! << 16) | (sums[j + 3]! << 24)) >>> 0) return i;
    if (raw) raw[i] = btrfsCsumFromRaw(c); // the same XOR turns it back
  }
  return -1;
}

let scratchRaw = new Uint32Array(256);
/** A scratch array for at least `n` raw sector CRCs (firstBadCrc32c without a caller's). */
function sectorScratch(n: number): Uint32Array {
  if (scratchRaw.length < n) scratchRaw = new Uint32Array(Math.max(n, scratchRaw.length * 2));
  return scratchRaw;
}

export function verifyBlockCsum(block: Uint8Array, csumType: number): boolean {
  const a = csumAlgo(csumType);
  a.digestInto(block.subarray(BTRFS_CSUM_SIZE), scratch, 0);
  for (let i = 0; i < a.size; i++) if (scratch[i] !== block[i]) return false;
  return true;
}
