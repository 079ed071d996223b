import { alignedShared } from './aligned.js';
import { copyShared } from './shared-copy.js';

/** Joins byte arrays; `into` (at least the total length) is reused instead of allocating. */
export function concatBytes(parts: readonly Uint8Array[], into?: Uint8Array): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = into ? into.subarray(0, len) : new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * A plain Uint8Array of `len` bytes whose contents are NOT zeroed, on its own ArrayBuffer (offset 0), for
 * buffers that are filled whole right away (reads, encoders): zero-filling them first costs a pass over
 * every byte. Not a Buffer, so `.slice()` still copies as callers expect.
 */
export function uninitBytes(len: number): Uint8Array {
  return new Uint8Array(Buffer.allocUnsafeSlow(len).buffer, 0, len);
}

/**
 * Buffers of one size handed out and given back, so a long producer/consumer run (send's output) reuses
 * a few instead of allocating one per chunk: each new large ArrayBuffer counts toward V8's external-memory
 * limit, and crossing it forces a full garbage collection. At most `keep` spare buffers are held.
 *
 * `shared`: the first `keep` buffers are pieces of one SharedArrayBuffer (`arena`) that another thread
 * may write into (a send's data read behind it, send/data-fill.ts); more at a time are plain ones.
 */
export class BufferPool {
  private readonly spare: Uint8Array[] = [];
  readonly arena: SharedArrayBuffer | undefined;

  constructor(readonly size: number, private readonly keep = 4, opts: { shared?: boolean } = {}) {
    if (opts.shared) {
      this.arena = alignedShared(size * keep); // page-aligned: see util/aligned.ts
      for (let i = keep - 1; i >= 0; i--) this.spare.push(new Uint8Array(this.arena, i * size, size));
    }
  }

  take(): Uint8Array {
    return this.spare.pop() ?? uninitBytes(this.size);
  }

  /** Gives back a buffer (or a view of one) that came from take(); anything else is ignored. */
  give(b: Uint8Array): void {
    if (b.buffer === this.arena) {
      if (b.byteOffset % this.size === 0) this.spare.push(new Uint8Array(this.arena, b.byteOffset, this.size));
      return;
    }
    if (b.buffer.byteLength !== this.size || b.byteOffset !== 0 || this.spare.length >= this.keep) return;
    this.spare.push(new Uint8Array(b.buffer, 0, this.size));
  }
}

/**
 * out.set(src, pos) where either side is shared memory (a SharedArrayBuffer: the send's decoded extents
 * come from the reading thread's slots, its output may be the BufferPool's arena): V8 copies to or from
 * shared memory word by word at best, byte by byte when the two sit differently within an 8-byte word;
 * copyShared makes it one memcpy (48 KiB pieces out of shared memory, this machine: 14-28 GB/s against
 * 5-8 GB/s through the aligned private staging buffer used before; docs/performance.md, ninth session).
 */
export function copyInto(out: Uint8Array, src: Uint8Array, pos: number): void {
  // within one buffer the two may overlap: set() copies as memmove does
  if (src.buffer !== out.buffer && (src.buffer instanceof SharedArrayBuffer || out.buffer instanceof SharedArrayBuffer)) copyShared(out, src, pos);
  else out.set(src, pos);
}

/**
 * copyInto(out, src, pos), unless `src` already is out[pos, pos + src.length): a read handed the buffer
 * to fill (an image source's `into`, the output's data room) returns that buffer when it honoured it.
 */
export function placeInto(out: Uint8Array, src: Uint8Array, pos = 0): void {
  if (src.buffer === out.buffer && src.byteOffset === out.byteOffset + pos) return;
  copyInto(out, src, pos);
}

/**
 * The little-endian u64 at `off` of `b` (in bounds: the caller checked), read byte by byte: tree items and
 * send-stream attributes alike. Small arrays V8 keeps on its heap, where a DataView (LeReader) would first
 * move the bytes out to an ArrayBuffer of their own: ~1 µs and one more buffer for the GC per item.
 */
export function u64At(b: Uint8Array, off: number): bigint {
  // (the halves as u32At reads them, written out: this is on every tree item's path, cold code included)
  const lo = (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
  const hi = (b[off + 4]! | (b[off + 5]! << 8) | (b[off + 6]! << 16) | (b[off + 7]! << 24)) >>> 0;
  // one BigInt from a safe integer (below 2^53), else built from its halves
  return hi < 0x200000 ? BigInt(hi * 0x100000000 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** The little-endian u32 at `off` of `b` (in bounds: the caller checked). */
export function u32At(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

/** Whether a and b hold the same bytes: names byte by byte, longer arrays (tree items) in one native compare. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.length > 64) return Buffer.compare(a, b) === 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Path components joined by '/', into one array sized first (a send builds a path for nearly every
 * command: a flatMap and a Buffer.concat were ~2 ms of a warm 40 ms incremental). One part is returned
 * as it is, none as an empty array.
 */
export function joinPath(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let len = parts.length - 1;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(Math.max(0, len));
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) out[at++] = 0x2f;
    out.set(parts[i]!, at);
    at += parts[i]!.length;
  }
  return out;
}
