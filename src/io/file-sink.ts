import { promises as fsp, write as fdWrite } from 'node:fs';
import { SendError } from '../errors.js';
import type { BufferPool } from '../util/bytes.js';

/** Bytes queued behind the write in progress before the producer waits (a few of the send's 1 MiB buffers). */
const QUEUE_BYTES = 8 << 20;

/**
 * A send stream's output file, written behind the sender, in order, on libuv's pool (the writing thread
 * of btrfs-progs' send, which copies the kernel's pipe to the file). The producer hands over buffers it
 * will not write again and goes on while up to QUEUE_BYTES of them wait: with one write in flight and
 * the next buffer awaited, the send waited ~0.4 s per 1.2 GiB stream for writes that a busy machine
 * scheduled late (docs/performance.md). Buffers go back to the pool once written. The first failure is
 * sticky: nothing more is written and the next write or close throws it, naming the byte where it failed.
 */
export class FileSink {
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  /** Whether the writing loop runs (it stops when the queue is empty). */
  private running = false;
  private failed: SendError | undefined;
  /** The producer waiting for room or for the queue to empty. */
  private wake: (() => void) | undefined;
  /** Bytes written so far: where the next buffer goes. */
  private at = 0;

  private constructor(
    private readonly out: SinkTarget, private readonly pool: BufferPool | undefined, readonly path: string,
    /** A regular file of ours (not /dev/null, a pipe, a device, stdout): only such an output is removed after a failure. */
    readonly regular: boolean,
    private readonly limit: number,
  ) {}

  static async open(path: string, pool?: BufferPool, limit = QUEUE_BYTES): Promise<FileSink> {
    const fh = await fsp.open(path, 'w');
    try {
      const target = { write: (b: Uint8Array, off: number, len: number) => fh.write(b, off, len).then((r) => r.bytesWritten), close: () => fh.close() };
      return new FileSink(target, pool, path, (await fh.stat()).isFile(), limit);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /**
   * Standard output (`btrfs-ts send IMAGE SUBVOL | btrfs receive DIR`) at its own offset, written on the
   * pool like a file: node writes to a pipe on stdout synchronously, so the send stood still while the
   * reader drained each 64 KiB of the pipe (--compressed-data through `| cat`: 7.2 s against 3.7 s with -f).
   * Left open at close.
   */
  static stdout(pool?: BufferPool, limit = QUEUE_BYTES): FileSink {
    return new FileSink({ write: (b, off, len) => writeFd(1, b, off, len), close: async () => undefined }, pool, 'stdout', false, limit);
  }

  /** Queues `b` (not to be changed afterwards); waits while the queue is full. */
  async write(b: Uint8Array): Promise<void> {
    if (this.failed) throw this.failed;
    if (b.length === 0) return;
    while (this.queued >= this.limit && !this.failed) await new Promise<void>((resolve) => { this.wake = resolve; });
    if (this.failed) throw this.failed;
    this.queue.push(b);
    this.queued += b.length;
    if (!this.running) void this.run();
  }

  /** Waits until everything queued is written, then closes the file; throws the first failure. */
  async close(): Promise<void> {
    try {
      while (this.running) await new Promise<void>((resolve) => { this.wake = resolve; });
    } finally {
      await this.out.close();
    }
    if (this.failed) throw this.failed;
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0 && !this.failed) {
      const b = this.queue[0]!;
      try {
        for (let done = 0; done < b.length;) done += await this.out.write(b, done, b.length - done);
        this.at += b.length;
      } catch (e) {
        const why = (e as Error).message.replace(/, write$/, '');
        this.failed = new SendError('SEND_WRITE', `cannot write the stream: ${why}`, { path: this.path, offset: this.at, cause: e });
      }
      this.queue.shift();
      this.queued -= b.length;
      this.pool?.give(b);
      this.signal();
    }
    this.queue.length = 0;
    this.queued = 0;
    this.running = false;
    this.signal();
  }

  private signal(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

/** Where a FileSink's bytes go, in order. */
interface SinkTarget {
  write(b: Uint8Array, off: number, len: number): Promise<number>;
  close(): Promise<void>;
}

/** write(2) at the descriptor's offset on the pool; a descriptor left non-blocking by whoever made it is waited for. */
function writeFd(fd: number, b: Uint8Array, off: number, len: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const attempt = (): void => fdWrite(fd, b, off, len, null, (e, n) => {
      if (e && e.code === 'EAGAIN') setTimeout(attempt, 1);
      else if (e) reject(e);
      else resolve(n);
    });
    attempt();
  });
}
