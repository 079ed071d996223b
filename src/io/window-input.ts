import { readSync } from 'node:fs';
import type { ByteReader, WindowSource } from '../stream/source.js';
import { alignedBytes, padToAlign, READ_ALIGN } from '../util/aligned.js';
import { MappedWindowReader } from './mapped-input.js';
import { closeFd, PooledFileInput } from './pooled-input.js';
import { ReadProgress } from './read-progress.js';

/**
 * Bytes per read(2). Small on purpose: a 128 KiB read lands in the CPU's L2 cache, where the parser's CRC
 * check reads it again straight away. Measured on big-v1 (1.2 GiB, page cache): read(2) alone 0.24 s in
 * 128 KiB pieces against 0.57 s in 1 MiB pieces, read + CRC32C 0.61 s against 0.95 s.
 */
const READ_SIZE = 128 << 10;

/**
 * A regular file read as a send stream. Iterated, it gives recycled 1 MiB chunks (PooledFileInput); the
 * parser, when its consumer keeps nothing past each command (reuseInput), asks for a window instead: one
 * contiguous buffer that read(2) fills in cache-sized pieces and commands are views into, so no command is
 * ever copied out of two chunks and the bytes are still in the cache when their CRC is checked.
 */
export class FileWindowInput implements WindowSource {
  private used = false;

  constructor(
    /** The file's descriptor (openInput opens it with openSync: no FileHandle, no node:fs/promises to load); closed by the reader. */
    private readonly fd: number,
    private readonly chunkSize: number,
    private readonly onRead?: (bytes: number) => void,
  ) {}

  openWindow(): ByteReader {
    this.claim();
    const close = (): Promise<void> => closeFd(this.fd);
    // the file's pages themselves where the addon can map them (no copy: mapped-input.ts), else read(2)
    return MappedWindowReader.open(this.fd, this.onRead, close) ?? new FdWindowReader(this.fd, this.onRead, close);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    this.claim();
    return new PooledFileInput(this.fd, this.chunkSize, 4, this.onRead)[Symbol.asyncIterator]();
  }

  /** Closes the file when nobody has started reading it (a command that fails before its first read). */
  async close(): Promise<void> {
    if (this.used) return;
    this.used = true;
    await closeFd(this.fd);
  }

  private claim(): void {
    if (this.used) throw new Error('a file input can be read only once');
    this.used = true;
  }
}

/**
 * ByteReader over one contiguous buffer that a subclass's readInto() fills (read(2) of a file, a pipe's
 * data delivered straight into it). Views returned by take() stay valid until releaseSpent(): while any is
 * outstanding, making room moves the unread bytes into another buffer instead of over them, and the old
 * one is kept until the release.
 */
export abstract class WindowReader implements ByteReader {
  // plain Uint8Arrays, not Buffers: every command and attribute is a subarray of this one, and a
  // Buffer's subarray goes through node's JS wrapper and FastBuffer constructor (~4% of a dump).
  // Page-aligned, and every read lands on a READ_ALIGN boundary of it (makeRoom): util/aligned.ts says why.
  private buf: Uint8Array = alignedBytes(2 * READ_SIZE);
  /** Views taken from `buf` are outstanding. */
  private pinned = false;
  /** A buffer left behind with outstanding views, and one free for the next move. */
  private held: Uint8Array | undefined;
  private spare: Uint8Array | undefined;
  private start = 0;
  private end = 0;
  private eof = false;
  position = 0;
  readonly reusing = true;

  private readonly progress: ReadProgress;

  constructor(onRead?: (bytes: number) => void) {
    this.progress = new ReadProgress(onRead);
  }

  /** Reads up to `len` bytes into buf at `off`: how many (0 at the end of the input), now or later. */
  protected abstract readInto(buf: Uint8Array, off: number, len: number): number | Promise<number>;
  protected abstract closeSource(): Promise<void>;

  get available(): number {
    return this.end - this.start;
  }

  async fill(n: number): Promise<number> {
    while (this.end - this.start < n && !this.eof) {
      const room = this.buf.length - this.end;
      if (this.buf.length - this.start < n || (room < 4096 && this.start >= READ_ALIGN)) this.makeRoom(n);
      const r = this.readInto(this.buf, this.end, Math.min(READ_SIZE, this.buf.length - this.end));
      const got = typeof r === 'number' ? r : await r;
      if (got === 0) {
        this.eof = true;
        break;
      }
      this.end += got;
      const pause = this.progress.advance(got);
      if (pause) await pause;
    }
    return Math.min(n, this.end - this.start);
  }

  /** The next `n` buffered bytes (n <= available), left in place for take(). */
  peek(n: number): Uint8Array {
    return this.buf.subarray(this.start, this.start + Math.min(n, this.end - this.start));
  }

  take(n: number): Uint8Array {
    if (n > this.end - this.start) throw new RangeError(`take(${n}) with only ${this.end - this.start} buffered`);
    const out = this.buf.subarray(this.start, this.start + n);
    this.start += n;
    this.position += n;
    this.pinned = true;
    return out;
  }

  releaseSpent(): void {
    this.pinned = false;
    if (this.held !== undefined) {
      this.spare = this.held;
      this.held = undefined;
    }
  }

  async close(): Promise<void> {
    this.eof = true;
    await this.closeSource();
  }

  /**
   * Moves the unread bytes to the front of a buffer with room for `n` of them plus a read: as near the
   * front as puts their end, where the next read lands, on a READ_ALIGN boundary.
   */
  private makeRoom(n: number): void {
    const pad = padToAlign(this.end - this.start);
    const size = Math.max(this.buf.length, pad + n + READ_SIZE);
    const unread = this.buf.subarray(this.start, this.end);
    if (!this.pinned && size === this.buf.length) {
      this.buf.copyWithin(pad, this.start, this.end);
    } else {
      const to = this.spare !== undefined && this.spare.length >= size ? this.spare : alignedBytes(size);
      this.spare = undefined;
      to.set(unread, pad);
      if (this.pinned) this.held = this.buf;
      else if (this.buf.length === size) this.spare = this.buf;
      this.buf = to;
      this.pinned = false; // the outstanding views are in `held`
    }
    this.end += pad - this.start;
    this.start = pad;
  }
}

/**
 * A regular file through synchronous reads at its offset (the parse waits for the bytes either way; a
 * read in the thread pool only adds a hop per piece): `-f FILE`, and stdin redirected from a file, which
 * is not ours to close (`close` absent).
 */
export class FdWindowReader extends WindowReader {
  constructor(private readonly fd: number, onRead?: (bytes: number) => void, private readonly closeFd?: () => Promise<void>) {
    super(onRead);
  }

  protected readInto(buf: Uint8Array, off: number, len: number): number {
    return readSync(this.fd, buf, off, len, null);
  }

  protected async closeSource(): Promise<void> {
    await this.closeFd?.();
  }
}
