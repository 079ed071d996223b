/**
 * LZO1X-1 encoder. It makes the same choices as the kernel's lzo1x_1_compress() on x86-64 (13-bit
 * hash of the next 4 bytes, one candidate per hash slot, literal-skip acceleration, 48 KiB blocks,
 * match extension in 8-byte steps), so for the same input it emits the same bytes the kernel wrote
 * into btrfs LZO extents — the fixture tests check exactly that. Output is plain LZO1X (no lzo-rle
 * version byte), decodable by liblzo2's lzo1x_decompress_safe.
 */
import { lzo1xWorstCompress } from './lzo1x-decompress.js';

const D_BITS = 13;
/** The hash table is per-call scratch; one shared instance avoids a 16 KiB allocation per sector. */
const dict = new Uint16Array(1 << D_BITS);
/** Largest block whose offsets all fit an M4 distance (0xbfff) — also why dict entries fit in u16. */
const BLOCK = 0xc000;
/** The encoder stops looking for matches this close to a block end, leaving room for 8-byte probes. */
const TAIL = 20;

/** Output cursor shared by the emit helpers; module-level to keep the hot loop free of allocations. */
const EMPTY = new Uint8Array(0);
let out: Uint8Array = EMPTY;
let op = 0;

function read32(s: Uint8Array, p: number): number {
  return s[p]! | (s[p + 1]! << 8) | (s[p + 2]! << 16) | (s[p + 3]! << 24);
}

function putCount(n: number): void {
  // Long-length extension: a zero byte per 255, then the remainder (which is never zero here).
  while (n > 255) {
    out[op++] = 0;
    n -= 255;
  }
  out[op++] = n;
}

/** Literal run in the middle of the stream (always followed by a match). */
function emitLiterals(src: Uint8Array, from: number, n: number): void {
  if (n <= 3) {
    // Short runs ride in the low two bits of the previous match's last-but-one byte.
    out[op - 2] = out[op - 2]! | n;
  } else if (n <= 18) {
    out[op++] = n - 3;
  } else {
    out[op++] = 0;
    putCount(n - 18);
  }
  if (n < 16) {
    for (let i = 0; i < n; i++) out[op + i] = src[from + i]!;
  } else {
    out.set(src.subarray(from, from + n), op);
  }
  op += n;
}

function emitMatch(len: number, dist: number): void {
  if (len <= 8 && dist <= 0x800) {
    const d = dist - 1;
    out[op++] = ((len - 1) << 5) | ((d & 7) << 2);
    out[op++] = d >> 3;
    return;
  }
  let d: number;
  if (dist <= 0x4000) {
    d = dist - 1;
    if (len <= 33) {
      out[op++] = 32 | (len - 2);
    } else {
      out[op++] = 32;
      putCount(len - 33);
    }
  } else {
    d = dist - 0x4000;
    const hiBit = (d >> 11) & 8;
    if (len <= 9) {
      out[op++] = 16 | hiBit | (len - 2);
    } else {
      out[op++] = 16 | hiBit;
      putCount(len - 9);
    }
  }
  out[op++] = (d << 2) & 0xff;
  out[op++] = (d >> 6) & 0xff;
}

/** Number of equal leading bytes (0..8) of s[a..a+8) and s[b..b+8). */
function equal8(s: Uint8Array, a: number, b: number): number {
  for (let i = 0; i < 8; i++) if (s[a + i] !== s[b + i]) return i;
  return 8;
}

/**
 * Compresses one block s[start, start+len). `carried` literals before `start` are still unwritten.
 * Returns how many literals are unwritten at the end of the block (carried into the next one).
 */
function compressBlock(s: Uint8Array, start: number, len: number, carried: number): number {
  const inEnd = start + len;
  const ipEnd = inEnd - TAIL;
  dict.fill(0);
  let ii = start; // first byte not yet emitted (not counting `carried`)
  let ip = start + (carried < 4 ? 4 - carried : 0);
  let advance = true;
  for (;;) {
    // Without a match, step further the longer the current literal run is: incompressible data
    // is skipped quickly instead of hashing every byte.
    if (advance) ip += 1 + ((ip - ii) >> 5);
    advance = true;
    if (ip >= ipEnd) break;
    const dv = read32(s, ip);
    const h = Math.imul(dv, 0x1824429d) >>> (32 - D_BITS);
    const cand = start + dict[h]!;
    dict[h] = ip - start;
    if (read32(s, cand) !== dv) continue;

    ii -= carried;
    carried = 0;
    if (ip > ii) emitLiterals(s, ii, ip - ii);

    let mlen = 4;
    let k = equal8(s, ip + mlen, cand + mlen);
    while (k === 8) {
      mlen += 8;
      if (ip + mlen >= ipEnd) {
        k = 0;
        break;
      }
      k = equal8(s, ip + mlen, cand + mlen);
    }
    mlen += k;
    emitMatch(mlen, ip - cand);
    ip += mlen;
    ii = ip;
    advance = false;
  }
  return inEnd - (ii - carried);
}

/**
 * Compresses src[srcStart, srcEnd) into dst at dstStart (dst needs lzo1xWorstCompress(len) bytes
 * of room) and returns the compressed length.
 */
export function lzo1x1CompressInto(
  src: Uint8Array,
  srcStart: number,
  srcEnd: number,
  dst: Uint8Array,
  dstStart: number,
): number {
  if (dst.length - dstStart < lzo1xWorstCompress(srcEnd - srcStart)) {
    throw new RangeError('lzo1x1CompressInto: output buffer smaller than the worst case');
  }
  out = dst;
  op = dstStart;
  let pos = srcStart;
  let remaining = srcEnd - srcStart;
  let pending = 0;
  while (remaining > TAIL) {
    const blockLen = Math.min(remaining, BLOCK);
    pending = compressBlock(src, pos, blockLen, pending);
    pos += blockLen;
    remaining -= blockLen;
  }
  pending += remaining;
  if (pending > 0) {
    const from = srcEnd - pending;
    if (op === dstStart && pending <= 238) {
      // Whole input is literals: a first byte > 17 encodes the run length without a separate opcode.
      dst[op++] = 17 + pending;
      dst.set(src.subarray(from, srcEnd), op);
      op += pending;
    } else {
      emitLiterals(src, from, pending);
    }
  }
  dst[op++] = 0x11; // M4 with distance 0: end of stream
  dst[op++] = 0;
  dst[op++] = 0;
  const written = op - dstStart;
  out = EMPTY; // do not keep the caller's buffer alive
  return written;
}

/** LZO1X-1 compression of a whole buffer (raw stream, no liblzo "header"). */
export function lzo1x1Compress(src: Uint8Array): Uint8Array {
  const buf = new Uint8Array(lzo1xWorstCompress(src.length));
  const n = lzo1x1CompressInto(src, 0, src.length, buf, 0);
  return buf.slice(0, n);
}
