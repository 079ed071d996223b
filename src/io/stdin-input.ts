import { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { ChunkReader, type ByteReader, type WindowSource } from '../stream/source.js';
import { alignedBytes } from '../util/aligned.js';
import { detectCompression, MAGIC_BYTES, type DestroyableInput } from './compression-magic.js';
import { FdWindowReader, WindowReader } from './window-input.js';

/** Bytes libuv may read at a time: more than a pipe holds (64 KiB on Linux by default). */
const LANDING = 128 << 10;

/**
 * stdin as a pipe or socket (`btrfs send | btrfs-ts receive IMAGE`) read into the parser's window through
 * one reused landing buffer (the socket's `onread`): process.stdin gave a new 64 KiB Buffer per read, and
 * on the 195 MiB comp-zstd-v2 stream that allocation made the receive's GC take 462 against 155 ms from a
 * file. Reads happen only while the parser waits for bytes (the socket is paused otherwise), and every
 * wait is on the event loop, so signals are handled and fail() breaks off a receive waiting for input.
 */
class SocketWindowReader extends WindowReader {
  private readonly sock: Socket;
  // page-aligned like the window (util/aligned.ts): a pipe's bytes are copied into it by the kernel
  private readonly landing = alignedBytes(LANDING);
  /** Bytes of the last read not yet copied out: landing[lo, hi). */
  private lo = 0;
  private hi = 0;
  private target: Uint8Array | undefined;
  private waiting: { resolve: (n: number) => void; reject: (e: Error) => void } | undefined;
  private ended = false;
  private failure: Error | undefined;

  constructor(fd: number, onRead?: (bytes: number) => void) {
    super(onRead);
    // manualStart: nothing is read before the first readInto asks for it
    const opts = { fd, readable: true, writable: false, manualStart: true, onread: { buffer: this.landing, callback: (n: number) => this.arrived(n) } };
    this.sock = new Socket(opts as ConstructorParameters<typeof Socket>[0]);
    this.sock.on('end', () => {
      this.ended = true;
      this.settle(0);
    });
    this.sock.on('error', (e) => this.fail(e));
  }

  protected readInto(buf: Uint8Array, off: number, len: number): number | Promise<number> {
    if (this.failure) throw this.failure;
    if (this.hi > this.lo) return this.copyOut(buf.subarray(off, off + len));
    if (this.ended) return 0;
    this.target = buf.subarray(off, off + len);
    return new Promise<number>((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.sock.resume();
    });
  }

  /** Breaks off a waiting read (and every later one) with `err`. */
  fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(this.failure);
    this.sock.destroy();
  }

  protected async closeSource(): Promise<void> {
    this.sock.destroy();
  }

  private arrived(n: number): boolean {
    this.lo = 0;
    this.hi = n;
    this.settle(this.target ? this.copyOut(this.target) : 0);
    // paused until the parser asks again
    return false;
  }

  private copyOut(to: Uint8Array): number {
    const n = Math.min(to.length, this.hi - this.lo);
    to.set(this.landing.subarray(this.lo, this.lo + n));
    this.lo += n;
    return n;
  }

  private settle(n: number): void {
    this.target = undefined;
    const w = this.waiting;
    this.waiting = undefined;
    w?.resolve(n);
  }
}

/** The raw bytes of `r` as chunks (copies), for a decompressor. */
async function* rawChunks(r: WindowReader): AsyncGenerator<Uint8Array> {
  while ((await r.fill(1)) > 0) {
    yield r.take(r.available).slice();
    r.releaseSpent();
  }
}

/**
 * The pipe's window, or a decompressed stream's chunks when the first bytes say so: chosen at the first
 * fill, so that nothing is read before the parser asks (a receive waiting for the pipe can be stopped).
 */
class StdinWindow implements ByteReader {
  private inner: ByteReader | undefined;
  private raw: SocketWindowReader | FdWindowReader | undefined;
  private decoded: DestroyableInput | undefined;
  private failure: Error | undefined;

  constructor(private readonly fd: number, private readonly isFile: boolean, private readonly onRead?: (bytes: number) => void, private readonly label = 'stdin') {}

  get position(): number {
    return this.inner?.position ?? 0;
  }

  get available(): number {
    return this.inner?.available ?? 0;
  }

  get reusing(): boolean {
    return this.inner?.reusing ?? true;
  }

  async fill(n: number): Promise<number> {
    this.inner ??= await this.choose();
    return this.inner.fill(n);
  }

  take(n: number): Uint8Array {
    if (!this.inner) throw new RangeError(`take(${n}) before any fill`);
    return this.inner.take(n);
  }

  releaseSpent(): void {
    this.inner?.releaseSpent();
  }

  async close(): Promise<void> {
    if (this.inner !== this.raw) await this.inner?.close();
    await this.raw?.close();
  }

  destroy(err: Error): void {
    this.failure ??= err;
    // the decompressor's source may be waiting on the pipe itself: both are broken off (a file's reads never wait)
    this.decoded?.destroy(err);
    if (this.raw instanceof SocketWindowReader) this.raw.fail(err);
  }

  private async choose(): Promise<ByteReader> {
    if (this.failure) throw this.failure;
    const raw = (this.raw = this.isFile ? new FdWindowReader(this.fd, this.onRead) : new SocketWindowReader(this.fd, this.onRead));
    const kind = detectCompression(raw.peek(await raw.fill(MAGIC_BYTES)));
    if (!kind) return raw;
    const { decompressed } = await import('./decompress.js');
    this.decoded = decompressed(Readable.from(rawChunks(raw)), kind, this.label);
    return new ChunkReader(this.decoded);
  }
}

/**
 * stdin that is a pipe, a socket or a file, or a pipe or socket that -f names (`-f <(zstdcat s.zst)`): a
 * window for a parser whose consumer keeps nothing past each command (receive, dump), the given chunk
 * iterator otherwise.
 */
export class StdinInput implements WindowSource, DestroyableInput {
  private window: StdinWindow | undefined;
  private failure: Error | undefined;

  constructor(
    private readonly fd: number,
    /** A regular file (read(2) at its offset), else a pipe or socket. */
    private readonly isFile: boolean,
    private readonly chunks: DestroyableInput,
    private readonly onRead?: (bytes: number) => void,
    /** What errors call it: stdin, or the pipe's name (-f <(...)). */
    private readonly label = 'stdin',
  ) {}

  openWindow(): ByteReader {
    if (this.window) throw new Error(`${this.label} can be read only once`);
    this.window = new StdinWindow(this.fd, this.isFile, this.onRead, this.label);
    if (this.failure) this.window.destroy(this.failure);
    return this.window;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.chunks[Symbol.asyncIterator]();
  }

  destroy(err: Error): void {
    this.failure ??= err;
    if (this.window) this.window.destroy(err);
    else this.chunks.destroy(err);
  }
}
