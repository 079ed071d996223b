import { crcPiecesRaw, crcUpdate } from './crc32c.js';

/**
 * CRC32C is linear, which lets one pass over data serve both CRCs a receive needs: the send stream
 * command CRC (raw: seed 0, no inversion) and the on-disk checksum of every 4 KiB sector (standard).
 * - crcUpdate(c, S) = shift(c, |S|) ^ rawcrc(S), where shift(c, n) = crcUpdate(c, n zero bytes): a
 *   command CRC is the per-sector raw CRCs of its data combined.
 * - standard(S) = ~crcUpdate(~0, S) = rawcrc(S) ^ shift(~0, |S|) ^ ~0: a sector's on-disk checksum is its
 *   raw CRC XOR a constant.
 * shift(c, 4096) is linear in c, so a table per byte of c (4 x 256) makes it four lookups.
 */
export const CRC_SECTOR = 4096;

const ZEROS = new Uint8Array(CRC_SECTOR);
/** SHIFT[j*256 + b]: the register b << 8j carried through one sector of zeros. */
const SHIFT = new Uint32Array(4 * 256);
{
  const bit = new Uint32Array(32);
  for (let k = 0; k < 32; k++) bit[k] = crcUpdate((1 << k) >>> 0, ZEROS);
  // built at import, so the cheap way: entry b is entry (b without its lowest bit) ^ that bit's row
  // (1024 XORs; the loop over every bit of every b was 8192 steps of cold code, ~7 M instructions)
  for (let j = 0; j < 4; j++) {
    for (let b = 1; b < 256; b++) {
      const low = 31 - Math.clz32(b & -b);
      SHIFT[j * 256 + b] = (SHIFT[j * 256 + (b & (b - 1))]! ^ bit[8 * j + low]!) >>> 0;
    }
  }
}

/** The register `crc` carried through CRC_SECTOR zero bytes (= crcUpdate(crc, zeros), without the pass). */
export function crc32cShiftSector(crc: number): number {
  return (SHIFT[crc & 0xff]! ^ SHIFT[256 + ((crc >>> 8) & 0xff)]! ^ SHIFT[512 + ((crc >>> 16) & 0xff)]! ^ SHIFT[768 + (crc >>> 24)]!) >>> 0;
}

/** standard(S) ^ rawcrc(S) for any whole sector S. */
const RAW_TO_BTRFS = (crc32cShiftSector(0xffffffff) ^ 0xffffffff) >>> 0;

/** The on-disk (standard CRC32C) checksum of a whole sector, from its raw CRC (seed 0, no inversion). */
export function btrfsCsumFromRaw(raw: number): number {
  return (raw ^ RAW_TO_BTRFS) >>> 0;
}

/**
 * Continues the raw register `crc` over `data`, and stores the raw CRC of each whole CRC_SECTOR piece of
 * `data` (from its start) in `sectors` (length floor(|data| / CRC_SECTOR)). Returns the register.
 */
export function crc32cRawBySector(crc: number, data: Uint8Array, sectors: Uint32Array): number {
  crcPiecesRaw(data, CRC_SECTOR, sectors);
  const c = crc32cCombineSectors(crc, sectors, 0, sectors.length);
  const o = sectors.length * CRC_SECTOR;
  // (data of whole sectors — every encoded extent's — has no tail to take a view of)
  return o === data.length ? c : crcUpdate(c, data.subarray(o));
}

/** The raw register `crc` carried on over sectors whose raw CRCs are raw[from .. to): crcUpdate over their bytes, without the pass. */
export function crc32cCombineSectors(crc: number, raw: Uint32Array, from: number, to: number): number {
  let c = crc;
  for (let i = from; i < to; i++) c = crc32cShiftSector(c) ^ raw[i]!;
  return c >>> 0;
}

/**
 * crc32cCombineSectors over the first `n` sectors whose stored btrfs checksums (crc32c, 4 bytes each,
 * little-endian) are `sums`: the raw CRC of bytes that match them, from the checksums themselves — for a
 * command framed before its bytes are read (send/extent-data.ts readBehind), without a Uint32Array of raw
 * CRCs made per extent first.
 */
export function crc32cCombineSums(crc: number, sums: Uint8Array, n: number): number {
  let c = crc;
  for (let i = 0; i < n; i++) {
    const j = 4 * i;
    c = crc32cShiftSector(c) ^ (sums[j]! | (sums[j + 1]! << 8) | (sums[j + 2]! << 16) | (sums[j + 3]! << 24)) ^ RAW_TO_BTRFS;
  }
  return c >>> 0;
}

/** crcUpdate(crc, n * CRC_SECTOR zero bytes), without the pass: what precedes a piece whose own CRC is known. */
export function crc32cShiftSectors(crc: number, n: number): number {
  let c = crc;
  for (let i = 0; i < n; i++) c = crc32cShiftSector(c);
  return c >>> 0;
}
