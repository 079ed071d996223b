/**
 * btrfs LZO extent framing (kernel fs/btrfs/lzo.c):
 *
 *   le32 total length of the framed data (this header and any in-sector padding included)
 *   then segments: le32 segment length + that many LZO1X bytes; each segment encodes at most one
 *   sector of input. A segment header never straddles a sector boundary: when fewer than 4 bytes are
 *   left in the current sector after a segment, they are zero padding and the next header starts
 *   on the next sector.
 *
 * "Sector" is the filesystem sectorsize for on-disk extents, or the size named by the encoded-I/O
 * compression code (LZO_4K .. LZO_64K) for send-stream ENCODED_WRITE data.
 */
import { CodecError } from '../errors.js';
import { lzo1xDecompressInto, lzo1xWorstCompress } from './lzo1x-decompress.js';
import { lzo1x1CompressInto } from './lzo1x-compress.js';

const LZO_LEN = 4;
/** Kernel BTRFS_MAX_COMPRESSED: no compressed extent is larger than 128 KiB on disk. */
export const BTRFS_MAX_COMPRESSED = 128 * 1024;

function checkSectorsize(sectorsize: number): void {
  if (!Number.isInteger(sectorsize) || sectorsize < 4096 || sectorsize > 65536 || (sectorsize & (sectorsize - 1)) !== 0) {
    throw new CodecError('LZO_SECTORSIZE', `btrfs lzo: unsupported sector size ${sectorsize}`);
  }
}

function le32(b: Uint8Array, p: number): number {
  return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
}

function put32(b: Uint8Array, p: number, v: number): void {
  b[p] = v & 0xff;
  b[p + 1] = (v >>> 8) & 0xff;
  b[p + 2] = (v >>> 16) & 0xff;
  b[p + 3] = (v >>> 24) & 0xff;
}

/**
 * Decodes framed LZO `data` (possibly zero-padded to the sector, as read from disk) into
 * out[0, out.length) and returns how many bytes the segments produced. Bytes after that are left
 * untouched (the caller's buffer is expected to be zeroed). Decoding more than out.length is an error.
 */
export function btrfsLzoDecompressInto(data: Uint8Array, out: Uint8Array, sectorsize: number): number {
  checkSectorsize(sectorsize);
  if (data.length < LZO_LEN) throw new CodecError('LZO_HEADER', 'btrfs lzo: extent shorter than its header', { offset: 0 });
  const total = le32(data, 0);
  // Same sanity rule as the kernel: the header may not claim more than we have (or than any
  // extent can hold), and must account for all but the last, padded, sector of the data.
  if (total > Math.min(BTRFS_MAX_COMPRESSED, data.length) || Math.ceil(total / sectorsize) * sectorsize < data.length || total < LZO_LEN) {
    throw new CodecError('LZO_HEADER', `btrfs lzo: header length ${total} invalid for ${data.length} bytes of data`, { offset: 0 });
  }
  const segMax = lzo1xWorstCompress(sectorsize);
  let cur = LZO_LEN;
  let produced = 0;
  while (cur < total) {
    if (total - cur < LZO_LEN) throw new CodecError('LZO_SEGMENT', 'btrfs lzo: truncated segment header', { offset: cur });
    const segLen = le32(data, cur);
    cur += LZO_LEN;
    if (segLen > segMax || segLen > total - cur) {
      throw new CodecError('LZO_SEGMENT', `btrfs lzo: segment length ${segLen} invalid`, { offset: cur - LZO_LEN });
    }
    // One segment is one sector of input, so it may not decode to more than a sector.
    const room = Math.min(sectorsize, out.length - produced);
    let n: number;
    try {
      n = lzo1xDecompressInto(data, cur, cur + segLen, out, produced, produced + room);
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      const more = e.code === 'LZO_OUTPUT_OVERRUN' && room < sectorsize;
      throw new CodecError(more ? 'DECODED_TOO_LONG' : e.code,
        more ? `btrfs lzo: extent decodes to more than ${out.length} bytes` : `btrfs lzo: segment at ${cur - LZO_LEN}: ${e.message}`,
        { offset: cur + (typeof e.offset === 'number' ? e.offset : 0), cause: e });
    }
    produced += n;
    cur += segLen;
    const left = sectorsize - (cur % sectorsize);
    if (left < LZO_LEN) cur += left;
  }
  return produced;
}

/** Decodes a framed LZO extent to exactly `unencodedLen` bytes (zero-filled past the decoded data). */
export function btrfsLzoDecompress(data: Uint8Array, unencodedLen: number, sectorsize: number): Uint8Array {
  const out = new Uint8Array(unencodedLen);
  btrfsLzoDecompressInto(data, out, sectorsize);
  return out;
}

/** Per-sector LZO scratch, grown to the largest sector size seen. */
let segScratch = new Uint8Array(lzo1xWorstCompress(4096));

/**
 * Frames `data` the way the kernel's lzo_compress_bio() does, or returns null where the kernel gives
 * up: output reaching as many sectors as the input, or more output than input after two sectors, or
 * (compress_file_range) a result that does not free at least one sector.
 */
export function btrfsLzoCompress(data: Uint8Array, sectorsize: number): Uint8Array | null {
  checkSectorsize(sectorsize);
  const len = data.length;
  if (len === 0) return null;
  const maxSectors = Math.floor(len / sectorsize);
  if (maxSectors === 0) return null;
  const worst = lzo1xWorstCompress(sectorsize);
  if (segScratch.length < worst) segScratch = new Uint8Array(worst);
  // The give-up rule caps output below maxSectors sectors; a little slack covers header + padding.
  const out = new Uint8Array(maxSectors * sectorsize + 2 * LZO_LEN);
  let pos = LZO_LEN;
  let cur = 0;
  while (cur < len) {
    const inLen = Math.min(len - cur, sectorsize - (cur % sectorsize));
    const segLen = lzo1x1CompressInto(data, cur, cur + inLen, segScratch, 0);
    put32(out, pos, segLen);
    pos += LZO_LEN;
    let copied = 0;
    while (copied < segLen) {
      const chunk = Math.min(sectorsize - (pos % sectorsize), segLen - copied);
      if (Math.floor((pos + chunk) / sectorsize) >= maxSectors) return null;
      out.set(segScratch.subarray(copied, copied + chunk), pos);
      pos += chunk;
      copied += chunk;
    }
    const left = (sectorsize - (pos % sectorsize)) % sectorsize;
    if (left !== 0 && left < LZO_LEN) {
      out.fill(0, pos, pos + left);
      pos += left;
    }
    cur += inLen;
    if (cur > 2 * sectorsize && cur < pos) return null;
  }
  put32(out, 0, pos);
  const rounded = (n: number) => Math.ceil(n / sectorsize) * sectorsize;
  if (rounded(pos) + sectorsize > rounded(len)) return null;
  return out.slice(0, pos);
}
