import { parseUuid as parseUuidOrNull } from '../../util/uuid.js';
import { ImageError } from '../../errors.js';

/**
 * Cursor helpers over little-endian bytes. Decoders check bounds up front (`need`) so a truncated item
 * becomes an ImageError naming the structure, not a RangeError from DataView.
 */
export class LeReader {
  readonly view: DataView;
  pos: number;

  constructor(readonly buf: Uint8Array, off = 0, readonly what = 'structure') {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = off;
  }

  need(n: number): void {
    if (this.pos < 0 || this.pos + n > this.buf.length) {
      throw new ImageError('IMAGE_TRUNCATED_STRUCT', `${this.what}: needs ${n} bytes at ${this.pos}, only ${this.buf.length - this.pos} left`, { command: this.what });
    }
  }
  u8(): number {
    this.need(1);
    return this.view.getUint8(this.pos++);
  }
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  /** A copy, so decoded structs never alias (and pin) a whole block buffer. */
  bytes(n: number): Uint8Array {
    this.need(n);
    const v = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }
}

export class LeWriter {
  readonly view: DataView;
  pos: number;

  constructor(readonly buf: Uint8Array, off = 0) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = off;
  }

  u8(v: number): void {
    this.view.setUint8(this.pos++, v);
  }
  u16(v: number): void {
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
  }
  u32(v: number): void {
    this.view.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
  }
  u64(v: bigint): void {
    this.view.setBigUint64(this.pos, BigInt.asUintN(64, v), true);
    this.pos += 8;
  }
  /** Writes exactly `n` bytes: `v` zero-padded (or refused if longer). */
  bytes(v: Uint8Array, n = v.length): void {
    if (v.length > n) throw new ImageError('IMAGE_FIELD_TOO_LONG', `field of ${v.length} bytes does not fit in ${n}`);
    this.buf.set(v, this.pos);
    this.buf.fill(0, this.pos + v.length, this.pos + n);
    this.pos += n;
  }
  skip(n: number): void {
    this.pos += n;
  }
}

/**
 * A writer for an item of `n` bytes (zeroed, as a new array is), to be ended by `encoded()`. Small items
 * are written into one scratch buffer and copied out: a new Uint8Array of up to 64 bytes lives on V8's
 * heap, and a DataView over it moves its bytes out to a new ArrayBuffer first — about 1 µs per item
 * encoded and one more buffer for the GC to sweep, where the copy of a few dozen bytes costs a tenth of
 * that. Not for an encoder that calls another one between the two (encoded() checks).
 */
export function itemWriter(n: number): LeWriter {
  if (n > SCRATCH_SIZE) return new LeWriter(new Uint8Array(n));
  scratch.buf.fill(0, 0, n);
  scratch.pos = 0;
  scratchLen = n;
  return scratch;
}

/** The bytes an itemWriter(n) wrote: a copy of its n bytes (its own buffer when it had one). */
export function encoded(w: LeWriter): Uint8Array {
  if (w !== scratch) return w.buf;
  // another encoder took the scratch buffer meanwhile (and ended first), or this one ends twice
  if (scratchLen < 0) throw new ImageError('IMAGE_INTERNAL', 'item scratch buffer used by two encoders at once');
  const n = scratchLen;
  scratchLen = -1;
  return scratch.buf.slice(0, n);
}

const SCRATCH_SIZE = 4096;
const scratch = new LeWriter(new Uint8Array(SCRATCH_SIZE));
/** Length of the item being written into the scratch buffer (-1: none). */
let scratchLen = -1;

export function zeros(n: number): Uint8Array {
  return new Uint8Array(n);
}

export { formatUuid, isZeroUuid } from '../../util/uuid.js';

/** A uuid from text; ImageError when it is not one. */
export function parseUuid(s: string): Uint8Array {
  const u = parseUuidOrNull(s);
  if (!u) throw new ImageError('IMAGE_BAD_UUID', `not a uuid: ${JSON.stringify(s)}`);
  return u;
}
