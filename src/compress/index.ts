/**
 * Codec facade for the rest of btrfs-ts: on-disk extent (de)compression in the kernel's formats and
 * the checks a planner needs before passing send-stream ENCODED_WRITE data straight into an image.
 */
import { CodecError } from '../errors.js';
import { BTRFS_MAX_COMPRESSED, btrfsLzoCompress, btrfsLzoDecompressInto } from './lzo-btrfs.js';
import { initZstd, zstdCompress, zstdDecompressExtent, zstdFrameInfo, zstdWindowOk } from './zstd.js';
import { zlibCompress, zlibDecompressExtent } from './zlib.js';

export { lzo1xDecompress, lzo1xDecompressInto, lzo1xWorstCompress } from './lzo1x-decompress.js';
export { lzo1x1Compress, lzo1x1CompressInto } from './lzo1x-compress.js';
export { btrfsLzoCompress, btrfsLzoDecompress, btrfsLzoDecompressInto, BTRFS_MAX_COMPRESSED } from './lzo-btrfs.js';
export { zstdFrameInfo, zstdWindowOk, zstdCompress, zstdDecoder, ZSTD_BTRFS_MAX_WINDOWLOG, ZSTD_BTRFS_MAX_WINDOW, ZSTD_BTRFS_DEFAULT_LEVEL } from './zstd.js';
export type { ZstdFrameInfo } from './zstd.js';
export { zlibCompress, BTRFS_ZLIB_DEFAULT_LEVEL } from './zlib.js';

/** btrfs_file_extent_item.compression */
export const BTRFS_COMPRESS_NONE = 0;
export const BTRFS_COMPRESS_ZLIB = 1;
export const BTRFS_COMPRESS_LZO = 2;
export const BTRFS_COMPRESS_ZSTD = 3;
export type BtrfsCompressType = 1 | 2 | 3;

/** Encoded I/O (send stream BTRFS_SEND_A_COMPRESSION) codes. */
export const BTRFS_ENCODED_IO_COMPRESSION_NONE = 0;
export const BTRFS_ENCODED_IO_COMPRESSION_ZLIB = 1;
export const BTRFS_ENCODED_IO_COMPRESSION_ZSTD = 2;
export const BTRFS_ENCODED_IO_COMPRESSION_LZO_4K = 3;
export const BTRFS_ENCODED_IO_COMPRESSION_LZO_8K = 4;
export const BTRFS_ENCODED_IO_COMPRESSION_LZO_16K = 5;
export const BTRFS_ENCODED_IO_COMPRESSION_LZO_32K = 6;
export const BTRFS_ENCODED_IO_COMPRESSION_LZO_64K = 7;

/** Kernel BTRFS_MAX_UNCOMPRESSED: a compressed extent covers at most 128 KiB of file data. */
export const BTRFS_MAX_UNCOMPRESSED = 128 * 1024;

let initPromise: Promise<void> | null = null;

/**
 * Loads the zstd wasm module. Idempotent; every other function here is synchronous after it. With
 * `decodeOnly` (a caller that never compresses), the module is left unloaded where our addon decodes zstd
 * (compress/zstd.ts initZstd); a later call without it loads it.
 */
export function initCodecs(opts: { decodeOnly?: boolean } = {}): Promise<void> {
  if (opts.decodeOnly) return initPromise ?? initZstd(true);
  if (!initPromise) initPromise = initZstd();
  return initPromise;
}

/** Maps an encoded-I/O compression code to the on-disk type (+ LZO sector size). NONE is not a codec. */
export function encodedToDisk(code: number): { type: BtrfsCompressType; lzoSectorSize?: number } {
  switch (code) {
    case BTRFS_ENCODED_IO_COMPRESSION_ZLIB:
      return { type: BTRFS_COMPRESS_ZLIB };
    case BTRFS_ENCODED_IO_COMPRESSION_ZSTD:
      return { type: BTRFS_COMPRESS_ZSTD };
    case 3: case 4: case 5: case 6: case 7:
      return { type: BTRFS_COMPRESS_LZO, lzoSectorSize: 1 << (code - BTRFS_ENCODED_IO_COMPRESSION_LZO_4K + 12) };
    default:
      throw new CodecError('ENCODED_COMPRESSION', `unknown or uncompressed encoded-I/O compression ${code}`);
  }
}

/** The encoded-I/O code a send stream uses for an on-disk extent of `type` on a `sectorsize` fs. */
export function diskToEncoded(type: number, sectorsize: number): number {
  switch (type) {
    case BTRFS_COMPRESS_ZLIB: return BTRFS_ENCODED_IO_COMPRESSION_ZLIB;
    case BTRFS_COMPRESS_ZSTD: return BTRFS_ENCODED_IO_COMPRESSION_ZSTD;
    case BTRFS_COMPRESS_LZO: {
      const shift = Math.log2(sectorsize);
      if (!Number.isInteger(shift) || shift < 12 || shift > 16) throw new CodecError('LZO_SECTORSIZE', `no LZO encoding for sector size ${sectorsize}`);
      return BTRFS_ENCODED_IO_COMPRESSION_LZO_4K + shift - 12;
    }
    default:
      throw new CodecError('COMPRESS_TYPE', `unknown on-disk compression type ${type}`);
  }
}

function checkRam(ramBytes: number): void {
  if (!Number.isSafeInteger(ramBytes) || ramBytes < 0) throw new CodecError('RAM_BYTES', `bad decoded length ${ramBytes}`);
}

/**
 * Decodes an extent's on-disk bytes (padding allowed) and reports how many bytes the compressed data
 * itself produced; `out` is always exactly ramBytes long, zero-filled past that, as the kernel reads it.
 * `into` (at least ramBytes long; used for zstd and LZO): `out` is a view of it instead of a new array,
 * for a caller that decodes many extents one after another and is done with each before the next.
 */
export function decodeExtent(type: number, data: Uint8Array, ramBytes: number, sectorsize: number, into?: Uint8Array): { out: Uint8Array; decodedLen: number } {
  checkRam(ramBytes);
  switch (type) {
    case BTRFS_COMPRESS_ZLIB:
      return zlibDecompressExtent(data, ramBytes);
    case BTRFS_COMPRESS_ZSTD:
      return zstdDecompressExtent(data, ramBytes, into);
    case BTRFS_COMPRESS_LZO: {
      const reuse = into !== undefined && into.length >= ramBytes;
      const out = reuse ? into.subarray(0, ramBytes) : new Uint8Array(ramBytes);
      const decodedLen = btrfsLzoDecompressInto(data, out, sectorsize);
      if (reuse) out.fill(0, decodedLen);
      return { out, decodedLen };
    }
    default:
      throw new CodecError('COMPRESS_TYPE', `unknown on-disk compression type ${type}`);
  }
}

/** Exactly ramBytes of file data from a compressed extent (in `into` if given: see decodeExtent); CodecError if corrupt or too long. */
export function decompressExtent(type: BtrfsCompressType, data: Uint8Array, ramBytes: number, sectorsize: number, into?: Uint8Array): Uint8Array {
  return decodeExtent(type, data, ramBytes, sectorsize, into).out;
}

/**
 * The on-disk bytes (unpadded) the kernel would store for `data` compressed with `type`, or null when
 * compression does not free at least one sector (the kernel then writes the data uncompressed).
 * `level` as the kernel's compress=type:level (zlib 1..9, zstd -15..15; ignored for LZO).
 */
export function compressExtent(type: BtrfsCompressType, data: Uint8Array, sectorsize: number, level?: number): Uint8Array | null {
  if (data.length > BTRFS_MAX_UNCOMPRESSED) {
    throw new CodecError('EXTENT_TOO_LARGE', `compressed extents cover at most ${BTRFS_MAX_UNCOMPRESSED} bytes, got ${data.length}`);
  }
  if (data.length === 0) return null;
  let c: Uint8Array | null;
  switch (type) {
    case BTRFS_COMPRESS_ZLIB: c = zlibCompress(data, level); break;
    case BTRFS_COMPRESS_ZSTD: c = zstdCompress(data, level); break;
    case BTRFS_COMPRESS_LZO: c = btrfsLzoCompress(data, sectorsize); break;
    default: throw new CodecError('COMPRESS_TYPE', `unknown on-disk compression type ${type}`);
  }
  if (c === null) return null;
  const roundUp = (n: number) => Math.ceil(n / sectorsize) * sectorsize;
  if (roundUp(c.length) + sectorsize > roundUp(data.length)) return null;
  return c;
}

export interface EncodedWriteArgs {
  /** BTRFS_SEND_A_COMPRESSION */
  compression: number;
  /** BTRFS_SEND_A_ENCRYPTION (must be 0) */
  encryption?: number;
  /** BTRFS_SEND_A_DATA: the encoded bytes as read from disk */
  data: Uint8Array;
  /** BTRFS_SEND_A_UNENCODED_FILE_LEN: bytes of file this write covers */
  unencodedFileLen: number;
  /** BTRFS_SEND_A_UNENCODED_LEN: decoded length of the whole extent (ram_bytes) */
  unencodedLen: number;
  /** BTRFS_SEND_A_UNENCODED_OFFSET: where the file's bytes start inside the decoded extent */
  unencodedOffset: number;
  /** Sector size of the image being written. */
  sectorsize: number;
}

export interface EncodedExtentCheck {
  diskType: BtrfsCompressType;
  lzoSectorSize?: number;
  /** The whole decoded extent, exactly unencodedLen bytes (zero-filled past decodedLen). */
  decoded: Uint8Array;
  /** Bytes the compressed data actually produced (may be < unencodedLen: sector-rounded tail). */
  decodedLen: number;
  /** decodedLen < unencodedOffset + unencodedFileLen: part of the written range comes from zero fill. */
  shortForFileRange: boolean;
  /**
   * Reasons the kernel would refuse this as an encoded write / on-disk extent on this image (so the
   * planner must write the decoded bytes instead). Empty: the data can be stored as-is.
   */
  passThroughProblems: string[];
}

/**
 * Validates and decodes one ENCODED_WRITE. Throws CodecError when the data does not decode (or decodes
 * past unencodedLen) or the lengths are inconsistent — btrfs receive fails on those too; otherwise
 * reports whether the bytes could go to disk unchanged, mirroring the kernel's encoded-write checks.
 */
export function checkEncodedExtent(a: EncodedWriteArgs): EncodedExtentCheck {
  const { type, lzoSectorSize } = encodedToDisk(a.compression);
  if ((a.encryption ?? 0) !== 0) throw new CodecError('ENCODED_ENCRYPTION', `encrypted encoded writes (${a.encryption}) are not supported`);
  const { unencodedLen: ulen, unencodedFileLen: flen, unencodedOffset: uoff } = a;
  for (const [k, v] of [['unencoded_len', ulen], ['unencoded_file_len', flen], ['unencoded_offset', uoff]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new CodecError('ENCODED_LENGTHS', `bad ${k} ${v}`);
  }
  if (ulen < flen || uoff > ulen - flen) {
    throw new CodecError('ENCODED_LENGTHS', `unencoded_offset ${uoff} + unencoded_file_len ${flen} exceeds unencoded_len ${ulen}`);
  }
  const problems: string[] = [];
  if (ulen > BTRFS_MAX_UNCOMPRESSED) problems.push(`unencoded_len ${ulen} > ${BTRFS_MAX_UNCOMPRESSED}`);
  if (a.data.length === 0 || a.data.length > BTRFS_MAX_COMPRESSED) problems.push(`encoded length ${a.data.length} not in 1..${BTRFS_MAX_COMPRESSED}`);
  if (a.data.length >= ulen) problems.push(`encoded length ${a.data.length} not smaller than unencoded_len ${ulen}`);
  if (lzoSectorSize !== undefined && lzoSectorSize !== a.sectorsize) {
    problems.push(`LZO framed for ${lzoSectorSize}-byte sectors, image uses ${a.sectorsize}`);
  }
  if (type === BTRFS_COMPRESS_ZSTD) {
    const info = zstdFrameInfo(a.data);
    if (!zstdWindowOk(info)) problems.push(`zstd window ${info.windowSize} (dict ${info.dictId}) beyond the kernel's 2^17 limit`);
  }
  const { out, decodedLen } = decodeExtent(type, a.data, ulen, lzoSectorSize ?? a.sectorsize);
  const check: EncodedExtentCheck = {
    diskType: type,
    decoded: out,
    decodedLen,
    shortForFileRange: decodedLen < uoff + flen,
    passThroughProblems: problems,
  };
  if (lzoSectorSize !== undefined) check.lzoSectorSize = lzoSectorSize;
  return check;
}
