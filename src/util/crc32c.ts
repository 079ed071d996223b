import CRC32C from 'crc-32/crc32c.js';

/**
 * Two CRC32C flavours meet in this project and must not be confused:
 * - the send stream stores the raw register: seed 0, no final inversion (kernel `crc32c(0, ...)`);
 * - on-disk btrfs checksums are the standard CRC32C: seed ~0, final inversion.
 * crc-32 implements the standard form (it inverts its seed on entry and its result on exit), so the raw
 * form is obtained by passing ~0 as seed and inverting the result back.
 */
export function crc32cRaw(data: Uint8Array, crc = 0): number {
  return ~CRC32C.buf(data, ~crc) >>> 0;
}

/** Standard CRC32C as btrfs stores it in tree block and data checksums. */
export function crc32cBtrfs(data: Uint8Array): number {
  return CRC32C.buf(data, 0) >>> 0;
}

/** btrfs name hash for DIR_ITEM keys: crc32c(~1, name) without final inversion. */
export function btrfsNameHash(name: Uint8Array): number {
  return crc32cRaw(name, 0xfffffffe);
}
