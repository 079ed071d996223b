/**
 * LZO1X decoder, "safe" flavour: every read of the input, every write of the output and every
 * back-reference is bounds-checked, so hostile extents from a send stream can only produce a CodecError.
 *
 * Bitstream (LZO1X, as liblzo2 and the kernel's lib/lzo decode it). One instruction byte `t`, then:
 *   t < 16, after a match with no trailing literals (or at the start): literal run of t+3 bytes
 *           (t == 0: long run, 18 + 255*zeros + next non-zero byte)
 *   t < 16, after a match that carried 1..3 literals: 2-byte match, distance 1 + (t>>2) + (b<<2)
 *   t < 16, right after a literal run:                3-byte match, distance 2049 + (t>>2) + (b<<2)
 *   t >= 64 (M2): length (t>>5)+1, distance 1 + ((t>>2)&7) + (b<<3)
 *   t >= 32 (M3): length (t&31)+2 (0: extended by 31), then le16 d: distance 1 + (d>>2)
 *   t >= 16 (M4): length (t&7)+2 (0: extended by 7), then le16 d: distance 16384 + ((t&8)<<11) + (d>>2);
 *                 a zero distance part is the end-of-stream marker (always 0x11 0x00 0x00).
 * Each match instruction carries 0..3 trailing literal bytes in the low two bits of its last-but-one byte.
 * A first byte > 17 is a literal run of (byte - 17) bytes at the start.
 */
import { CodecError } from '../errors.js';

function fail(code: string, message: string, offset: number): never {
  throw new CodecError(code, `lzo1x: ${message}`, { offset });
}

/**
 * Decodes src[srcStart, srcEnd) into dst[dstStart, dstEnd) and returns the number of bytes written.
 * The stream must end with the end marker exactly at srcEnd (liblzo2 and the kernel reject trailing
 * bytes with LZO_E_INPUT_NOT_CONSUMED, so we do too).
 */
export function lzo1xDecompressInto(
  src: Uint8Array,
  srcStart: number,
  srcEnd: number,
  dst: Uint8Array,
  dstStart: number,
  dstEnd: number,
): number {
  if (srcEnd > src.length || srcStart < 0 || srcStart > srcEnd) fail('LZO_ARGS', 'bad input range', srcStart);
  if (dstEnd > dst.length || dstStart < 0 || dstStart > dstEnd) fail('LZO_ARGS', 'bad output range', srcStart);
  if (srcEnd - srcStart < 3) fail('LZO_INPUT_OVERRUN', 'input shorter than the end marker', srcStart);
  let ip = srcStart;
  let op = dstStart;
  // 0: may start a literal run; 1..3: previous match carried that many literals; 4: after a literal run.
  // (Plain locals rather than helper closures: captured variables would slow the hot loop ~2x.)
  let state = 0;
  let lit = 0;

  const first = src[ip]!;
  if (first > 17) {
    ip++;
    lit = first - 17;
    state = lit < 4 ? lit : 4;
  }

  for (;;) {
    if (lit !== 0) {
      if (lit > srcEnd - ip) fail('LZO_INPUT_OVERRUN', `literal run of ${lit} bytes past end of input`, ip - srcStart);
      if (lit > dstEnd - op) fail('LZO_OUTPUT_OVERRUN', `literal run of ${lit} bytes overflows output`, ip - srcStart);
      if (lit < 16) {
        for (let i = 0; i < lit; i++) dst[op + i] = src[ip + i]!;
      } else {
        dst.set(src.subarray(ip, ip + lit), op);
      }
      ip += lit;
      op += lit;
      lit = 0;
    }
    if (ip >= srcEnd) fail('LZO_INPUT_OVERRUN', 'missing end-of-stream marker', ip - srcStart);
    const instAt = ip;
    const t = src[ip++]!;
    let len: number;
    let dist: number;
    if (t < 16) {
      if (state === 0) {
        if (t !== 0) {
          lit = t + 3;
        } else {
          lit = 18 + extendedLength(src, ip, srcEnd, srcStart);
          ip = extEnd;
        }
        state = 4;
        continue;
      }
      if (ip >= srcEnd) fail('LZO_INPUT_OVERRUN', 'truncated short match', instAt - srcStart);
      const b = src[ip++]!;
      if (state === 4) {
        len = 3;
        dist = 2049 + (t >> 2) + (b << 2);
      } else {
        len = 2;
        dist = 1 + (t >> 2) + (b << 2);
      }
      lit = t & 3;
    } else if (t >= 64) {
      if (ip >= srcEnd) fail('LZO_INPUT_OVERRUN', 'truncated M2 match', instAt - srcStart);
      const b = src[ip++]!;
      len = (t >> 5) + 1;
      dist = 1 + ((t >> 2) & 7) + (b << 3);
      lit = t & 3;
    } else {
      const isM3 = t >= 32;
      const lenBits = isM3 ? t & 31 : t & 7;
      if (lenBits !== 0) {
        len = lenBits + 2;
      } else {
        len = (isM3 ? 33 : 9) + extendedLength(src, ip, srcEnd, srcStart);
        ip = extEnd;
      }
      if (srcEnd - ip < 2) fail('LZO_INPUT_OVERRUN', 'truncated match distance', instAt - srcStart);
      const d = src[ip]! | (src[ip + 1]! << 8);
      ip += 2;
      lit = d & 3;
      if (isM3) {
        dist = 1 + (d >> 2);
      } else {
        dist = ((t & 8) << 11) + (d >> 2);
        if (dist === 0) {
          // End marker. Like the kernel, only the canonical 0x11 form is accepted.
          if (len !== 3) fail('LZO_ERROR', 'malformed end-of-stream marker', instAt - srcStart);
          if (ip !== srcEnd) fail('LZO_INPUT_NOT_CONSUMED', `${srcEnd - ip} bytes after end marker`, ip - srcStart);
          return op - dstStart;
        }
        dist += 0x4000;
      }
    }
    if (dist > op - dstStart) fail('LZO_LOOKBEHIND_OVERRUN', `match distance ${dist} before start of output`, instAt - srcStart);
    if (len > dstEnd - op) fail('LZO_OUTPUT_OVERRUN', `match of ${len} bytes overflows output`, instAt - srcStart);
    let from = op - dist;
    if (dist >= len && len > 32) {
      dst.copyWithin(op, from, from + len);
      op += len;
    } else {
      // Overlapping copies replicate bytes (distance 1 = run-length), so go byte by byte.
      const end = op + len;
      while (op < end) dst[op++] = dst[from++]!;
    }
    state = lit;
  }
}

/** Where the last extendedLength() stopped reading (avoids returning a tuple per call). */
let extEnd = 0;

/** Reads the "zero bytes count 255 each, then one non-zero byte" length extension at src[p]. */
function extendedLength(src: Uint8Array, p: number, end: number, base: number): number {
  let n = 0;
  for (;;) {
    if (p >= end) fail('LZO_INPUT_OVERRUN', 'truncated length extension', p - base);
    const b = src[p++]!;
    if (b !== 0) {
      extEnd = p;
      return n + b;
    }
    n += 255;
  }
}

/** Worst-case LZO1X expansion of `n` input bytes (the LZO FAQ bound the kernel uses for buffers). */
export function lzo1xWorstCompress(n: number): number {
  return n + Math.floor(n / 16) + 64 + 3;
}

/**
 * Decodes one complete LZO1X stream. With `dstLen`, the output may hold at most that many bytes
 * (an overflow is a CodecError) and the result is trimmed to what was decoded. Without it the output
 * grows as needed (LZO expands at most ~255x per input byte, so growth is bounded by the input).
 */
export function lzo1xDecompress(src: Uint8Array, dstLen?: number): Uint8Array {
  if (dstLen !== undefined) {
    if (!Number.isSafeInteger(dstLen) || dstLen < 0) throw new CodecError('LZO_ARGS', `lzo1x: bad dstLen ${dstLen}`);
    const out = new Uint8Array(dstLen);
    const n = lzo1xDecompressInto(src, 0, src.length, out, 0, dstLen);
    return n === dstLen ? out : out.slice(0, n);
  }
  const hardCap = 255 * src.length + 64;
  let cap = Math.min(hardCap, Math.max(64, src.length * 4));
  for (;;) {
    const out = new Uint8Array(cap);
    try {
      const n = lzo1xDecompressInto(src, 0, src.length, out, 0, cap);
      return out.slice(0, n);
    } catch (e) {
      if (!(e instanceof CodecError) || e.code !== 'LZO_OUTPUT_OVERRUN' || cap >= hardCap) throw e;
      cap = Math.min(hardCap, cap * 4);
    }
  }
}
