import { crcUpdate } from './crc32c-slice16.js';

/**
 * Two CRC32C flavours meet in this project and must not be confused:
 * - the send stream stores the raw register: seed 0, no final inversion (kernel `crc32c(0, ...)`);
 * - on-disk btrfs checksums are the standard CRC32C: seed ~0, final inversion.
 * Both run on the same raw register update (crc32c-slice16.ts); the standard form only adds the
 * inversions. (The crc-32 package was used before; its slicing JS was the top of the dump profile.)
 */
export function crc32cRaw(data: Uint8Array, crc = 0): number {
  return crcUpdate(crc, data);
}

/** Standard CRC32C as btrfs stores it in tree block and data checksums. */
export function crc32cBtrfs(data: Uint8Array): number {
  return ~crcUpdate(0xffffffff, data) >>> 0;
}

/** btrfs name hash for DIR_ITEM keys: crc32c(~1, name) without final inversion. */
export function btrfsNameHash(name: Uint8Array): number {
  return crc32cRaw(name, 0xfffffffe);
}
