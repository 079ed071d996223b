import { closeSync, fstatSync, openSync, write as fdWrite, writeSync } from 'node:fs';
import { SendError } from '../errors.js';
import type { BufferPool } from '../util/bytes.js';

/** Bytes queued behind the write in progress before the producer waits (a few of the send's 1 MiB buffers). */
const QUEUE_BYTES = 8 << 20;

/**
 * A stream file made here is its owner's alone, as btrfs-progs makes `btrfs send -f`'s (0600): a stream
 * holds every file's data, those of root's 0600 files too. An existing file keeps its mode.
 */
export const STREAM_FILE_MODE = 0o600;

/**
 * Another thread that writes buffers of a regular file for the sink (the data-fill thread of a full
 * --compressed-data send, send/data-fill.ts): its jobs are settled on the producer's thread, in order.
 */
export interface WriteBehind {
  /** Whether it can write `b`. */
  writesBehind(b: Uint8Array): boolean;
  /** Leaves the write; `fallback` does it in line where the thread did not, `after` runs once it is settled. A job number. */
  postWrite(fd: number, b: Uint8Array, position: number, fallback: () => Promise<void>, after: () => void): Promise<number>;
  /** Waits until job `job` and those before it are settled. */
  settleJob(job: number): Promise<void>;
}

/**
 * A send stream's output file, written behind the sender on libuv's pool (the writing thread of
 * btrfs-progs' send, which copies the kernel's pipe to the file). The producer hands over buffers it
 * will not write again and goes on while up to QUEUE_BYTES of them are out: with one write in flight and
 * the next buffer awaited, the send waited ~0.4 s per 1.2 GiB stream for writes that a busy machine
 * scheduled late (docs/performance.md). A regular file gets every queued buffer written at its own
 * offset at once (writeAt); anything else (stdout, a pipe, a device) one buffer at a time, in order.
 * Buffers go back to the pool once written. A failure is sticky: nothing more is started and the next
 * write or close throws it, naming the first byte that could not be written.
 * With a WriteBehind, a regular file's buffers that it takes are written by its thread instead of the
 * pool's: no pool thread woken per buffer (woken on the producer's CPU while the other was busy, those
 * preempted a send's thread for 250-400 ms of ~0.9 s: docs/performance.md, thirteenth session).
 */
export class FileSink {
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  /** Whether the writing loop runs (it stops when the queue is empty). */
  private running = false;
  private failed: SendError | undefined;
  /** The producer waiting for room or for the queue to empty. */
  private wake: (() => void) | undefined;
  /** Bytes written so far: where the next buffer goes (written in order). */
  private at = 0;
  /** Where the next buffer goes, and writes out at once (written at offsets). */
  private next = 0;
  private inFlight = 0;
  /** Jobs of the WriteBehind not yet settled, oldest first. */
  private readonly behindJobs: number[] = [];

  private constructor(
    private readonly out: SinkTarget, private readonly pool: BufferPool | undefined, readonly path: string,
    /** A regular file of ours (not /dev/null, a pipe, a device, stdout): only such an output is removed after a failure. */
    readonly regular: boolean,
    private readonly limit: number,
    private readonly behind?: WriteBehind,
  ) {}

  /**
   * `behind`: writes a regular file's buffers it takes on its own thread. The file is opened and looked at
   * on this thread, its buffers written with fs.write: no FileHandle, so node:fs's promises API (ten
   * modules) is not loaded for it (a send's start: docs/performance.md, fourteenth session, incr18).
   */
  static async open(path: string, pool?: BufferPool, limit = QUEUE_BYTES, behind?: WriteBehind): Promise<FileSink> {
    const fd = openSync(path, 'w', STREAM_FILE_MODE);
    try {
      const regular = fstatSync(fd).isFile();
      const target: SinkTarget = {
        write: (b, off, len, position) => writeFd(fd, b, off, len, position),
        // once every write is done (close() waits for them): no round trip through the pool for it
        close: async () => closeSync(fd),
        // a regular file is written at known offsets: several writes can be out at once
        positional: regular,
        fd,
      };
      return new FileSink(target, pool, path, regular, limit, regular ? behind : undefined);
    } catch (e) {
      closeSync(fd);
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
    if (b.length === 0 && !this.failed) return;
    while (this.queued >= this.limit && !this.failed) await this.drained();
    if (this.failed) {
      await this.idle(); // writes still out may fail at an earlier byte
      throw this.failed;
    }
    this.queued += b.length;
    if (this.out.positional) {
      const position = this.next;
      this.next += b.length;
      if (this.behind && this.out.fd !== undefined && this.behind.writesBehind(b)) {
        this.behindJobs.push(await this.behind.postWrite(this.out.fd, b, position, () => this.writeInLine(b, position), () => this.written(b)));
      } else {
        void this.writeAt(b, position);
      }
      return;
    }
    this.queue.push(b);
    if (!this.running) void this.run();
  }

  /** Waits until everything queued is written, then closes the file; throws the first failure. */
  async close(): Promise<void> {
    try {
      await this.idle();
    } finally {
      await this.out.close();
    }
    if (this.failed) throw this.failed;
  }

  /**
   * One buffer written at its own offset of a regular file, while others are: every queued buffer is out
   * at once, so the pool's threads go on writing while the send's thread runs without returning to its
   * event loop (with one write out at a time the next waited for that return, and the send — 0.45 s of a
   * 1.5 s --compressed-data send — for the queue to drain; docs/performance.md, ninth session).
   */
  private async writeAt(b: Uint8Array, position: number): Promise<void> {
    this.inFlight++;
    let done = 0;
    try {
      while (done < b.length && !this.failed) done += await this.out.write(b, done, b.length - done, position + done);
    } catch (e) {
      this.fail(e, position + done);
    }
    this.inFlight--;
    this.queued -= b.length;
    this.pool?.give(b);
    this.signal();
  }

  /** A buffer the WriteBehind's thread did not write, written here (its error in node's words, as the pool's). */
  private async writeInLine(b: Uint8Array, position: number): Promise<void> {
    if (this.failed) return;
    let done = 0;
    try {
      while (done < b.length) done += writeSync(this.out.fd!, b, done, b.length - done, position + done);
    } catch (e) {
      this.fail(e, position + done);
    }
  }

  /** A WriteBehind's job settled: its buffer is done with. */
  private written(b: Uint8Array): void {
    this.behindJobs.shift();
    this.queued -= b.length;
    this.pool?.give(b);
    this.signal();
  }

  /** Waits for one write to finish: the WriteBehind's oldest is settled here (nothing else settles it meanwhile). */
  private async drained(): Promise<void> {
    if (this.behindJobs.length > 0) await this.behind!.settleJob(this.behindJobs[0]!);
    else await this.woken();
  }

  /** Waits until no write is out. */
  private async idle(): Promise<void> {
    while (this.running || this.inFlight > 0 || this.behindJobs.length > 0) await this.drained();
  }

  private woken(): Promise<void> {
    return new Promise<void>((resolve) => { this.wake = resolve; });
  }

  /** Records a failed write at byte `at`: the earliest such byte is the one reported. */
  private fail(e: unknown, at: number): void {
    if (this.failed && (this.failed.offset ?? 0) <= at) return;
    const why = (e as Error).message.replace(/, write$/, '');
    this.failed = new SendError('SEND_WRITE', `cannot write the stream: ${why}`, { path: this.path, offset: at, cause: e });
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0 && !this.failed) {
      const b = this.queue[0]!;
      try {
        for (let done = 0; done < b.length;) done += await this.out.write(b, done, b.length - done);
        this.at += b.length;
      } catch (e) {
        this.fail(e, this.at);
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
  /** `position`: where in the file (positional targets only); else at the descriptor's offset, in call order. */
  write(b: Uint8Array, off: number, len: number, position?: number): Promise<number>;
  close(): Promise<void>;
  /** Writes may be out at once, each at its position. */
  positional?: boolean;
  /** The descriptor (a regular file's, for a WriteBehind). */
  fd?: number;
}

/**
 * write(2) at the descriptor's offset (pwrite(2) at `position`) on the pool; a descriptor left non-blocking
 * by whoever made it is waited for.
 */
function writeFd(fd: number, b: Uint8Array, off: number, len: number, position: number | null = null): Promise<number> {
  return new Promise((resolve, reject) => {
    const attempt = (): void => fdWrite(fd, b, off, len, position, (e, n) => {
      if (e && e.code === 'EAGAIN') setTimeout(attempt, 1);
      else if (e) reject(e);
      else resolve(n);
    });
    attempt();
  });
}
