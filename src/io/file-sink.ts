import { promises as fsp } from 'node:fs';
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
    private readonly fh: fsp.FileHandle, private readonly pool: BufferPool | undefined, readonly path: string,
    /** A regular file (not /dev/null, a pipe, a device): only such an output is removed after a failure. */
    readonly regular: boolean,
    private readonly limit: number,
  ) {}

  static async open(path: string, pool?: BufferPool, limit = QUEUE_BYTES): Promise<FileSink> {
    const fh = await fsp.open(path, 'w');
    try {
      return new FileSink(fh, pool, path, (await fh.stat()).isFile(), limit);
    } catch (e) {
      await fh.close();
      throw e;
    }
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
      await this.fh.close();
    }
    if (this.failed) throw this.failed;
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0 && !this.failed) {
      const b = this.queue[0]!;
      try {
        for (let done = 0; done < b.length;) done += (await this.fh.write(b, done, b.length - done)).bytesWritten;
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
