import { StreamError, type ErrorContext } from '../errors.js';
import * as C from './constants.js';
import type { RawAttr, Timespec } from './types.js';
import { u64At } from '../util/bytes.js';

const EMPTY = new Uint8Array(0);

/**
 * The attributes of one command, indexed by type like btrfs-progs' `cmd_attrs` (a repeated type keeps the
 * last value, as there). Accessors enforce exact integer widths, as `TLV_GET_INT` does. Values are kept
 * as where they lie in the payload, not as views: integers (most attributes) are read in place, and a
 * view per attribute was most of the parser's allocation and a tenth of its time (typed array creation).
 */
export class AttrTable {
  /** Each type's value: its start in `payload`, -1 when absent; and its length. */
  private readonly starts = new Int32Array(C.BTRFS_SEND_A_MAX + 1).fill(-1);
  private readonly lens = new Int32Array(C.BTRFS_SEND_A_MAX + 1);
  private payload: Uint8Array = EMPTY;
  /** Types in stream order: a new array per command (it becomes the command's meta.attrOrder). */
  order: number[] = [];
  /** After detach(): the attribute whose view bytes() may still hand out; every other one is copied. */
  private keep: number | undefined;

  constructor(private readonly ctx: () => ErrorContext) {}

  /**
   * Splits a command payload into attributes. DATA in v2+ has no length and takes the rest. `reuse`: a
   * table of the same error context whose command is done with, filled anew instead of a new one (its
   * 36-slot array was a third of a small command's allocation).
   */
  static parse(payload: Uint8Array, version: number, ctx: () => ErrorContext, payloadOffset: number, reuse?: AttrTable): AttrTable {
    let t: AttrTable;
    if (reuse !== undefined && reuse.ctx === ctx) {
      t = reuse;
      for (const type of t.order) t.starts[type] = -1;
      t.order = [];
      t.keep = undefined;
    } else {
      t = new AttrTable(ctx);
    }
    t.payload = payload;
    const len = payload.length;
    let pos = 0;
    while (pos < len) {
      if (len - pos < 2) throw t.err('ATTR_OVERRUN', 'attribute header runs past the end of its command', payloadOffset + pos);
      const type = payload[pos]! | (payload[pos + 1]! << 8);
      if (type === 0 || type > C.BTRFS_SEND_A_MAX) {
        throw t.err('BAD_ATTRIBUTE_TYPE', `invalid attribute type ${type}`, payloadOffset + pos);
      }
      pos += 2;
      let alen: number;
      if (version >= 2 && type === C.BTRFS_SEND_A_DATA) {
        alen = len - pos;
      } else {
        if (len - pos < 2) throw t.err('ATTR_OVERRUN', `attribute ${C.sendAttrName(type)} header runs past the end of its command`, payloadOffset + pos - 2);
        alen = payload[pos]! | (payload[pos + 1]! << 8);
        pos += 2;
        if (len - pos < alen) {
          throw t.err('ATTR_OVERRUN', `attribute ${C.sendAttrName(type)} of ${alen} bytes runs past the end of its command (${len - pos} left)`, payloadOffset + pos - 4);
        }
      }
      t.starts[type] = pos;
      t.lens[type] = alen;
      t.order.push(type);
      pos += alen;
    }
    return t;
  }

  /**
   * From now on bytes() and extras() hand out copies of every value but `keep`'s, so the payload's buffer
   * may be reused after this command. Copied as they are asked for, not all at once: integers are read
   * straight from the payload and never copied (most of a command's attributes).
   */
  detach(keep: number): void {
    this.keep = keep;
  }

  /** A value as bytes() hands it out: a copy after detach(), but for the kept attribute. */
  private out(type: number, v: Uint8Array): Uint8Array {
    // Buffer.from copies (v.slice() would not when v is a Buffer) into node's shared 8 KiB slabs: a
    // small new Uint8Array would live on V8's heap and be moved out the first time its .buffer is asked for
    return this.keep === undefined || type === this.keep ? v : Buffer.from(v);
  }

  err(code: string, message: string, offset?: number): StreamError {
    const c = this.ctx();
    return new StreamError(code, message, offset === undefined ? c : { ...c, offset });
  }

  has(type: number): boolean {
    return this.starts[type]! >= 0;
  }

  /** Where `type`'s value starts in the payload (-1: absent) and how long it is (lengthOf). */
  offsetOf(type: number): number {
    return this.starts[type]!;
  }

  lengthOf(type: number): number {
    return this.lens[type]!;
  }

  bytes(type: number): Uint8Array {
    return this.out(type, this.raw(type));
  }

  private raw(type: number): Uint8Array {
    const s = this.present(type);
    return this.payload.subarray(s, s + this.lens[type]!);
  }

  private present(type: number): number {
    const s = this.starts[type]!;
    if (s < 0) throw this.err('MISSING_ATTRIBUTE', `required attribute ${C.sendAttrName(type)} is missing`);
    return s;
  }

  /** Where a fixed-size value starts in the payload (the integer accessors read it there). */
  private sized(type: number, size: number): number {
    const s = this.present(type);
    const n = this.lens[type]!;
    if (n !== size) throw this.err('BAD_ATTRIBUTE_LENGTH', `attribute ${C.sendAttrName(type)} has ${n} bytes, expected ${size}`);
    return s;
  }

  u64(type: number): bigint {
    return u64At(this.payload, this.sized(type, 8));
  }

  u32(type: number): number {
    const s = this.sized(type, 4);
    const v = this.payload;
    return (v[s]! | (v[s + 1]! << 8) | (v[s + 2]! << 16) | (v[s + 3]! << 24)) >>> 0;
  }

  u8(type: number): number {
    return this.payload[this.sized(type, 1)]!;
  }

  uuid(type: number): Uint8Array {
    this.sized(type, 16);
    return this.bytes(type);
  }

  timespec(type: number): Timespec {
    const s = this.sized(type, 12);
    const v = this.payload;
    return { sec: BigInt.asIntN(64, u64At(v, s)), nsec: (v[s + 8]! | (v[s + 9]! << 8) | (v[s + 10]! << 16) | (v[s + 11]! << 24)) >>> 0 };
  }

  optU64(type: number): bigint | undefined {
    return this.has(type) ? this.u64(type) : undefined;
  }

  optU32(type: number): number | undefined {
    return this.has(type) ? this.u32(type) : undefined;
  }

  /** Attributes not in `used`, for round-tripping whatever the command did not define. */
  extras(used: readonly number[]): RawAttr[] | undefined {
    // allocated only when there is one: this runs for every command
    let out: RawAttr[] | undefined;
    for (const type of this.order) {
      if (!used.includes(type)) (out ??= []).push({ type, value: this.out(type, this.raw(type)) });
    }
    return out;
  }
}
