import { alignedShared } from '../util/aligned.js';

/** Settled copies kept for reuse: their allocation volume (most plain data) was driving V8's full GCs. */
const SPARE_MAX = 8 << 20;
/** Gather buffers kept free for the next swap (a fresh one is 8 MiB of new pages). */
const FREE_GATHERS = 2;
/**
 * Lent gather buffers made at most (unless none is free): the writer's three holders and the current
 * one, and two written from while gathering goes on. All are kept: the device's thread holds each.
 */
const MAX_LENT_GATHERS = 6;

/** The device's side of lending (BlockDevice.settle). */
export interface LendingDevice {
  settle(buffer: SharedArrayBuffer, wait?: boolean): boolean;
}

/**
 * The buffers gathered writes live in once they leave the gather buffer (gather-writer.ts): copies of
 * small ranges, in size classes, and whole gather buffers that large ranges keep. Handed back when their
 * range is written out or dropped, and kept for the next one up to a bound, since allocating them again
 * (fresh pages, and external memory that makes V8 collect) cost more than the bytes they hold.
 *
 * With a lending device the gather buffers are page-aligned shared memory that the device's write-behind
 * thread writes extents from without a copy (BlockDevice.settle): a buffer given back may still be being
 * written, so the oldest free one is taken next, once the device is done with it.
 */
export class GatherBuffers {
  /** Spare buffers by size (spareClass), for settled copies. */
  private readonly spare = new Map<number, Uint8Array[]>();
  private spareBytes = 0;
  private readonly freeGathers: Uint8Array[] = [];
  /** Lent gather buffers made. */
  private lentGathers = 0;

  constructor(private readonly gatherSize: number, private readonly device?: LendingDevice) {}

  /** A gather buffer (gatherSize bytes): a free one, else a new one. */
  takeGather(): Uint8Array {
    const d = this.device;
    if (d === undefined) return this.freeGathers.pop() ?? new Uint8Array(this.gatherSize);
    const b = this.freeGathers[0];
    // the oldest free one if it is written out; while it is not, a new one (up to the bound: then wait for it)
    if (b !== undefined && (this.lentGathers >= MAX_LENT_GATHERS || d.settle(b.buffer as SharedArrayBuffer, false))) {
      this.freeGathers.shift();
      d.settle(b.buffer as SharedArrayBuffer);
      return b;
    }
    this.lentGathers++;
    return new Uint8Array(alignedShared(this.gatherSize), 0, this.gatherSize);
  }

  /** Gather buffers are lent to the device (shared memory). */
  get lending(): boolean {
    return this.device !== undefined;
  }

  /**
   * A spare of about `len` bytes (never more than twice as large), else a new one. Buffers come in size
   * classes (powers of two up to 64 KiB, then multiples of 64 KiB) kept in a list each: with many small
   * files the spares were thousands of buffers searched one by one per file.
   */
  takeSpare(len: number): Uint8Array {
    const cls = spareClass(len);
    // a small class is one size; a large one may take a spare up to 1 MiB (and 2x) larger
    const top = cls <= 65536 ? cls : Math.min(2 * len + 65536, cls + (1 << 20));
    for (let c = cls; c <= top; c += 65536) {
      const b = this.spare.get(c)?.pop();
      if (b !== undefined) {
        this.spareBytes -= b.length;
        return b;
      }
    }
    return new Uint8Array(cls);
  }

  /** `b` is free again: a whole gather buffer (`gather`) or a settled copy. */
  give(b: Uint8Array, gather: boolean): void {
    if (gather) {
      if (this.device !== undefined || this.freeGathers.length < FREE_GATHERS) this.freeGathers.push(b);
      return;
    }
    if (this.spareBytes + b.length > SPARE_MAX) return;
    let list = this.spare.get(b.length);
    if (!list) this.spare.set(b.length, (list = []));
    list.push(b);
    this.spareBytes += b.length;
  }
}

/** The size a settled copy of `len` bytes gets: a power of two up to 64 KiB (at least 4 KiB), else 64 KiB multiples. */
function spareClass(len: number): number {
  if (len > 65536) return Math.ceil(len / 65536) * 65536;
  let c = 4096;
  while (c < len) c *= 2;
  return c;
}
