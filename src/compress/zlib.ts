/**
 * zlib for btrfs extents: a zlib stream (2-byte header, deflate data, adler32) possibly followed by
 * zero padding to the sector. Backend: node:zlib — measured faster than fflate on real kernel-written
 * 128 KiB extents for both directions (bench/codecs.mjs, numbers in docs/codecs.md).
 *
 * Decoding follows fs/btrfs/zlib.c: a valid header without a preset dictionary is skipped and the
 * deflate data is inflated raw, so the adler32 trailer is not verified (the kernel does not either)
 * and anything after the final deflate block is ignored.
 */
import { CodecError } from '../errors.js';
import { nodeZlib } from '../util/lazy-builtins.js';

export const BTRFS_ZLIB_DEFAULT_LEVEL = 3;

/** Checks the RFC 1950 header the way the kernel decides it may skip it. */
function checkHeader(data: Uint8Array): void {
  if (data.length < 2) throw new CodecError('ZLIB_HEADER', 'zlib: extent shorter than the zlib header', { offset: 0 });
  const cmf = data[0]!;
  const flg = data[1]!;
  if ((cmf & 0x0f) !== 8 || cmf >> 4 > 7) throw new CodecError('ZLIB_HEADER', `zlib: not a deflate stream (CMF 0x${cmf.toString(16)})`, { offset: 0 });
  if (((cmf << 8) | flg) % 31 !== 0) throw new CodecError('ZLIB_HEADER', 'zlib: header check bits wrong', { offset: 1 });
  if (flg & 0x20) throw new CodecError('ZLIB_HEADER', 'zlib: preset dictionary not supported (the kernel has none)', { offset: 1 });
}

/**
 * Decodes into exactly `ramBytes` bytes (zero-filled past the decoded content) and reports how many
 * bytes the stream produced.
 */
export function zlibDecompressExtent(data: Uint8Array, ramBytes: number): { out: Uint8Array; decodedLen: number } {
  checkHeader(data);
  let decoded: Uint8Array;
  try {
    // One output chunk of the expected size avoids zlib's chunk list + concat for the common case.
    decoded = nodeZlib().inflateRawSync(data.subarray(2), { maxOutputLength: Math.max(ramBytes, 1), chunkSize: Math.max(ramBytes + 64, 64) });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') {
      throw new CodecError('DECODED_TOO_LONG', `zlib: decodes to more than ${ramBytes} bytes`, { cause: e });
    }
    throw new CodecError('ZLIB_CORRUPT', `zlib: ${(e as Error).message}`, { cause: e });
  }
  if (decoded.length > ramBytes) throw new CodecError('DECODED_TOO_LONG', `zlib: decodes to ${decoded.length} > ${ramBytes} bytes`);
  if (decoded.length === ramBytes && decoded.byteOffset === 0 && decoded.buffer.byteLength === ramBytes) {
    return { out: new Uint8Array(decoded.buffer, 0, ramBytes), decodedLen: ramBytes };
  }
  const out = new Uint8Array(ramBytes);
  out.set(decoded);
  return { out, decodedLen: decoded.length };
}

/** A zlib stream (with header and adler32) at `level` 1..9, as the kernel's zlib workspace writes. */
export function zlibCompress(data: Uint8Array, level: number = BTRFS_ZLIB_DEFAULT_LEVEL): Uint8Array {
  if (level === 0) level = BTRFS_ZLIB_DEFAULT_LEVEL;
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new CodecError('ZLIB_LEVEL', `zlib: level ${level} outside 1..9`);
  const b = nodeZlib().deflateSync(data, { level });
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}
