import type { CrcAhead } from '../io/crc-ahead.js';

/**
 * A source that can take chunks back once the consumer holds no view into them, and fill them again:
 * reading a large stream then allocates a few chunks instead of one per read (allocation volume is what
 * makes V8 run full GCs).
 */
export interface RecyclingSource extends AsyncIterable<Uint8Array> {
  recycle(chunk: Uint8Array): void;
}

/**
 * What the parser reads from: bytes buffered on demand and taken in order. Views returned by take() stay
 * valid until releaseSpent() when `reusing`, for good otherwise.
 */
export interface ByteReader {
  /** Absolute offset of the next byte take() returns. */
  readonly position: number;
  /** Bytes buffered and not yet taken. */
  readonly available: number;
  /** Views from take() are valid only until releaseSpent() (the reader refills their bytes after it). */
  readonly reusing: boolean;
  /** Buffers until `n` bytes are available or input ends; returns how many are (< n only at EOF). */
  fill(n: number): Promise<number>;
  take(n: number): Uint8Array;
  releaseSpent(): void;
  close(): Promise<void>;
  /**
   * A regular file's reader may check the commands' CRCs ahead on another thread (io/crc-ahead.ts), from
   * the next byte take() returns — the first command header; stopped by close().
   */
  crcAhead?(maxLen: number): CrcAhead | undefined;
}

/**
 * An input that can also be read as one window of contiguous bytes (a file): a parser whose consumer keeps
 * nothing past each command reads it through openWindow() instead of iterating its chunks.
 */
export interface WindowSource extends AsyncIterable<Uint8Array> {
  openWindow(): ByteReader;
}

export function isWindowSource(x: unknown): x is WindowSource {
  return typeof (x as { openWindow?: unknown }).openWindow === 'function';
}

const EMPTY = new Uint8Array(0);

export function isRecyclingSource(x: unknown): x is RecyclingSource {
  return typeof (x as { recycle?: unknown }).recycle === 'function';
}

/**
 * Pull-style reader over an AsyncIterable of chunks. It keeps only the chunks not yet consumed, so memory
 * is bounded by the largest single request plus one input chunk, whatever the stream's size.
 */
export class ChunkReader implements ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  /**
   * Buffered chunks from index `first` on: consumed ones are dropped by moving `first` (and compacting now
   * and then), not by Array#shift, which moves every element — with many tiny chunks (a pipe delivering
   * bytes one at a time) a large command was quadratic in its length.
   */
  private chunks: Uint8Array[] = [];
  private first = 0;
  /** Read position inside chunks[first]. */
  private head = 0;
  private buffered = 0;
  private done = false;
  /** Absolute offset of the next byte `take` returns. */
  position = 0;
  /** With reuse: chunks fully consumed, handed back to the source at the next releaseSpent(). */
  private readonly spent: Uint8Array[] = [];
  private readonly recycler: RecyclingSource | undefined;

  /**
   * With `reuse`, a recycling source gets its chunks back through releaseSpent(): the caller promises that
   * nothing returned by take() before that call is used after it.
   */
  constructor(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: { reuse?: boolean } = {}) {
    this.it = toAsyncIterator(input);
    this.recycler = opts.reuse && isRecyclingSource(input) ? input : undefined;
  }

  /** Chunks go back to the source (reuse was asked for and the source recycles). */
  get reusing(): boolean {
    return this.recycler !== undefined;
  }

  /** Gives every fully consumed chunk back to a recycling source (no-op otherwise). */
  releaseSpent(): void {
    if (!this.recycler) return;
    for (const c of this.spent) this.recycler.recycle(c);
    this.spent.length = 0;
  }

  /** Buffers until `n` bytes are available or input ends; returns how many are available (≤ n only at EOF). */
  async fill(n: number): Promise<number> {
    while (this.buffered < n && !this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        break;
      }
      if (r.value.length === 0) continue;
      this.chunks.push(r.value);
      this.buffered += r.value.length;
    }
    return Math.min(n, this.buffered);
  }

  get available(): number {
    return this.buffered;
  }

  /**
   * Consumes `n` buffered bytes (caller must have filled them). Returns a view when the bytes sit in one
   * chunk, a fresh copy when they span chunks. Views stay valid: the source reuses a chunk only after
   * releaseSpent(), with `reuse`.
   */
  take(n: number): Uint8Array {
    if (n > this.buffered) throw new RangeError(`take(${n}) with only ${this.buffered} buffered`);
    const first = this.chunks[this.first];
    let out: Uint8Array;
    if (first !== undefined && first.length - this.head >= n) {
      out = first.subarray(this.head, this.head + n);
      this.advance(n);
    } else {
      out = new Uint8Array(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[this.first]!;
        const k = Math.min(n - filled, c.length - this.head);
        out.set(c.subarray(this.head, this.head + k), filled);
        filled += k;
        this.advance(k);
      }
    }
    return out;
  }

  /** Discards `n` bytes without copying them; reads through the input as needed. Returns bytes skipped. */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0 && (await this.fill(1)) === 0) break;
      const k = Math.min(left, this.chunks[this.first]!.length - this.head);
      this.advance(k);
      left -= k;
    }
    return n - left;
  }

  private advance(k: number): void {
    this.head += k;
    this.buffered -= k;
    this.position += k;
    if (this.head === this.chunks[this.first]!.length) {
      const c = this.chunks[this.first]!;
      this.chunks[this.first++] = EMPTY;
      if (this.first === this.chunks.length) {
        this.chunks.length = 0;
        this.first = 0;
      } else if (this.first >= 1024 && this.first * 2 >= this.chunks.length) {
        this.chunks.splice(0, this.first);
        this.first = 0;
      }
      if (this.recycler) this.spent.push(c);
      this.head = 0;
    }
  }

  /** Stops the underlying iterator (closes files or streams early). */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.it.return?.();
    }
  }
}

function toAsyncIterator(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncIterator<Uint8Array> {
  if (Symbol.asyncIterator in input) return (input as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const sync = (input as Iterable<Uint8Array>)[Symbol.iterator]();
  return {
    next: async () => sync.next(),
    return: async () => sync.return?.() ?? { done: true, value: undefined },
  };
}
