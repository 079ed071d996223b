import { FillThread } from './data-fill-worker.js';
import { NativeFill } from './data-fill-native.js';

/**
 * File data read into the output behind the send, on a second thread: the send frames each command
 * whose DATA can be read whole — checksummed sectors, crc32c, 4 KiB — in its output buffer as if the
 * bytes were there (the command CRC comes from the stored sector checksums, crc32c-combine.ts), and
 * leaves a job: read these bytes from the first copy whose sectors match these checksums into this
 * room. The worker reads them from the image file straight into the output (memory shared with it: the
 * BufferPool's arena), so that reading and checking 0.6 GB of a --compressed-data send leaves the
 * send's thread, and nothing is copied twice. A buffer goes out only once its jobs are done (`settle`).
 *
 * Jobs pass through a ring in shared memory and Atomics, not messages: one structured-clone message
 * per few extents cost the send's thread more than the reads it saved (docs/performance.md, send10).
 * A job the worker could not do — no copy matched, a read failed, the worker is gone — is done again
 * on the send's thread by the fallback it came with (readVerified), which reports what it finds in
 * its usual words before the buffer goes out.
 *
 * The thread is the native addon's where it has one (native/data-fill.c, data-fill-native.ts: no V8
 * isolate to start, no JavaScript per job), else a worker running data-fill-worker.ts (FillThread).
 * The addon's thread also writes the output (postWrite, a job after the buffer's own: io/file-sink.ts's
 * WriteBehind), so that no pool thread is woken per buffer; the worker leaves such jobs to the send.
 */

/** Jobs out at a time. */
const RING = 256;
/** The largest job: a protocol 2 WRITE piece or a compressed extent's stored bytes. */
export const FILL_MAX = 128 * 1024;
const SECTOR = 4096;
const MAX_SECTORS = FILL_MAX / SECTOR;
/**
 * The worker is woken when this many jobs wait for it (or the send waits for them), not for each: a wake
 * per job (a futex call each side, the worker asleep again after every 32 KiB extent) cost the send's
 * thread more than the reads.
 */
const WAKE_AT = 32;
/**
 * The addon's thread sooner (a wake is one futex call): at 32 it slept through buffers of large extents
 * (a 1 MiB buffer holds 8 jobs of 128 KiB), which the send then did itself. Jobs done by the send's thread,
 * of 9,867, at load ~10: 1,468-3,513 at 32, 585-2,003 at 8 (waits for the thread 83-124 -> 2-44), 453-1,075
 * at 2 (but 2,561-3,651 wakes).
 */
const NATIVE_WAKE_AT = 8;
/** Copies of a block group's data (DUP, RAID1 2, RAID1C3 3, RAID1C4 4). */
const MAX_COPIES = 4;
/**
 * The copies word of a write job (postWrite): the output buffer at the job's arena offset written to the
 * descriptor in its second offset word at the position in its first (native/data-fill.c write_job).
 */
const WRITE = -1;
/** Control words: jobs posted, jobs done, worker asleep, send waiting, stop. */
const TAIL = 0;
const DONE = 1;
const SLEEPING = 2;
const WAITING = 3;
const STOP = 4;
const CTL_BYTES = 32;
/** Per job: copies, length, arena offset, state. */
const INTS = 4;
/** Job states: posted, being done by the worker, done by it, left by it to the send, taken by the send. */
const POSTED = 0;
const WORKING = 4;
const FILLED = 1;
const LEFT = 2;
const TAKEN = 3;
const INTS_AT = CTL_BYTES;
const OFFS_AT = INTS_AT + RING * INTS * 4;
const SUMS_AT = OFFS_AT + RING * MAX_COPIES * 8;
const SHARED_BYTES = SUMS_AT + RING * MAX_SECTORS * 4;

/**
 * The ring's layout and words as both threads get them: the worker by name (data-fill-worker.ts), the
 * addon's thread as values in this order (the enum of native/data-fill.c).
 */
const LAYOUT = { RING, INTS, MAX_COPIES, MAX_SECTORS, INTS_AT, OFFS_AT, SUMS_AT, TAIL, DONE, SLEEPING, WAITING, STOP, POSTED, WORKING, FILLED, LEFT };

/** Atomics.waitAsync (ES2024, in Node since 16): the ES2022 library the project compiles against lacks it. */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, i: number, v: number, timeout: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

export interface DataFillOptions {
  /** The image file the worker reads. */
  path: string;
  /** Where the output buffers are (BufferPool.arena): only rooms in it are filled behind. */
  arena: SharedArrayBuffer;
  /** URL of the compiled modules' folder (dist/) the worker imports from (tests point it at dist/). */
  modules?: string;
  /** Whether the send does jobs the worker has not started rather than wait for them (default: yes). */
  take?: boolean;
  /** The worker to use, started earlier (else one is started at the first job); closed with the DataFill. */
  thread?: FillThread;
  /** The addon's thread where there is one (data-fill-native.ts), unless a worker is given (default: yes). */
  native?: boolean;
}

export class DataFill {
  private started = false;
  private thread: FillThread | undefined;
  private native: NativeFill | undefined;
  /** False once the worker failed or was closed: nothing more is posted, what is out is done in line. */
  private usable = true;
  private readonly shared = new SharedArrayBuffer(SHARED_BYTES);
  private readonly ctl = new Int32Array(this.shared, 0, CTL_BYTES / 4);
  private readonly ints = new Int32Array(this.shared, INTS_AT, RING * INTS);
  private readonly offs = new Float64Array(this.shared, OFFS_AT, RING * MAX_COPIES);
  private readonly sums = new Uint8Array(this.shared, SUMS_AT, RING * MAX_SECTORS * 4);
  private posted = 0;
  /** Jobs whose results the send has looked at (and redone where needed). */
  private settled = 0;
  private readonly fallbacks: (() => Promise<void>)[] = new Array(RING);
  /** What runs once a write job is settled (postWrite). */
  private readonly afters: ((() => void) | undefined)[] = new Array(RING);
  /** What a job the send took failed with (undefined: done). */
  private readonly taken: unknown[] = new Array(RING);

  constructor(private readonly o: DataFillOptions) {}

  /** Whether `room` (for `len` bytes) can be filled behind: in the arena, whole sectors, one job's size. */
  takes(room: Uint8Array, len: number): boolean {
    return this.usable && room.buffer === this.o.arena && len > 0 && len <= FILL_MAX && len % SECTOR === 0 && room.length >= len;
  }

  /**
   * Leaves the job of reading `len` bytes into `room` from the first of `copies` (physical offsets) whose
   * sectors match `sums` (crc32c, 4 bytes per sector, every sector checksummed); `fallback` does it in
   * line when the worker cannot (and throws what it finds).
   */
  async post(room: Uint8Array, len: number, copies: bigint[], sums: Uint8Array, fallback: () => Promise<void>): Promise<void> {
    const e = await this.entry();
    const n = Math.min(copies.length, MAX_COPIES);
    for (let k = 0; k < n; k++) this.offs[e * MAX_COPIES + k] = Number(copies[k]!);
    this.sums.set(sums.subarray(0, (len / SECTOR) * 4), e * MAX_SECTORS * 4);
    this.publish(e, n, len, room.byteOffset, fallback, undefined);
  }

  /**
   * Whether the thread can write `b`, an output buffer whose jobs are settled, to the output file
   * (postWrite): the addon's thread only (the worker would leave every such job to the send), `b` in the arena.
   */
  writesBehind(b: Uint8Array): boolean {
    if (!this.usable || b.buffer !== this.o.arena || b.length === 0) return false;
    return this.started ? this.native !== undefined : !this.o.thread && this.o.native !== false && NativeFill.available;
  }

  /**
   * Leaves the write of `b` to descriptor `fd` at `position` to the thread, after the jobs before it (it
   * takes no room of its own: `b` is final). `fallback` writes it in line where the thread did not (and
   * reports what it finds); `after` runs once it is settled either way. Returns the job's number (settleJob).
   */
  async postWrite(fd: number, b: Uint8Array, position: number, fallback: () => Promise<void>, after: () => void): Promise<number> {
    const e = await this.entry();
    this.offs[e * MAX_COPIES] = position;
    this.offs[e * MAX_COPIES + 1] = fd;
    const job = this.posted;
    this.publish(e, WRITE, b.length, b.byteOffset, fallback, after);
    return job;
  }

  /** Waits until job `job` (postWrite's number) and those before it are done. */
  settleJob(job: number): Promise<void> {
    return this.settleTo(job + 1);
  }

  /** The ring entry for the next job, once it is free. */
  private async entry(): Promise<number> {
    if (this.posted - this.settled >= RING) await this.settleTo(this.posted - RING + 1);
    // the worker may still have to pass the job this entry held (taken by the send, settled, not yet skipped)
    while (this.usable && this.posted - Atomics.load(this.ctl, DONE) >= RING) {
      this.wake();
      await this.sleep(Atomics.load(this.ctl, DONE));
    }
    return this.posted % RING;
  }

  /** Posts the job in entry `e` (its offsets and sums already there). */
  private publish(e: number, n: number, len: number, at: number, fallback: () => Promise<void>, after: (() => void) | undefined): void {
    this.ints[e * INTS] = n;
    this.ints[e * INTS + 1] = len;
    this.ints[e * INTS + 2] = at;
    this.fallbacks[e] = fallback;
    this.afters[e] = after;
    this.taken[e] = undefined;
    Atomics.store(this.ints, e * INTS + 3, POSTED); // last: a worker that claims the entry sees it whole
    this.start();
    Atomics.store(this.ctl, TAIL, ++this.posted);
    if (this.posted - Atomics.load(this.ctl, DONE) >= (this.native ? NATIVE_WAKE_AT : WAKE_AT)) this.wake();
  }

  /** Waits for the jobs whose rooms are in `buf` (and those before them: jobs are done in order). */
  async settleThrough(buf: Uint8Array): Promise<void> {
    if (buf.buffer !== this.o.arena) return;
    for (let n = this.posted; n > this.settled; n--) {
      const at = this.ints[((n - 1) % RING) * INTS + 2]!;
      if (at >= buf.byteOffset && at < buf.byteOffset + buf.length) return this.settleTo(n);
    }
  }

  /** Waits for every job posted. */
  settle(): Promise<void> {
    return this.settleTo(this.posted);
  }

  /** Waits until the first `n` jobs are done; redoes in line those the worker left (in order). */
  private async settleTo(n: number): Promise<void> {
    while (this.settled < n) {
      const e = this.settled % RING;
      // DONE before the state: the worker stores a job's state before counting it, so a job counted done
      // is seen with its final state (read the other way round, a job finishing in between would be
      // seen as still running and redone)
      const done = Atomics.load(this.ctl, DONE);
      const state = Atomics.load(this.ints, e * INTS + 3);
      if (state !== TAKEN && done <= this.settled && this.usable) {
        // the worker may sleep with fewer than WAKE_AT jobs waiting: woken first, it does the earliest
        // while the send does the last of those needed that it has not started, rather than wait
        this.wake();
        if (this.o.take !== false && await this.take(n)) continue;
        await this.sleep(done);
        continue;
      }
      const ok = state === TAKEN ? this.taken[e] === undefined : this.settled < done && state === FILLED;
      const fallback = this.fallbacks[e]!;
      const after = this.afters[e];
      this.fallbacks[e] = undefined as unknown as () => Promise<void>;
      this.afters[e] = undefined;
      this.settled++;
      try {
        if (state === TAKEN && !ok) throw this.taken[e];
        if (!ok) await fallback();
      } finally {
        after?.();
      }
    }
  }

  /**
   * Does in line (its fallback: the same read and checks) the latest of jobs settled..n-1 that the worker
   * has not started, so that the send works instead of waiting when the worker is behind; its error, if
   * any, is thrown when the send settles that job, in order. False when there is none.
   */
  private async take(n: number): Promise<boolean> {
    for (let j = n - 1; j >= this.settled; j--) {
      const e = j % RING;
      if (Atomics.compareExchange(this.ints, e * INTS + 3, POSTED, TAKEN) !== POSTED) {
        if (Atomics.load(this.ints, e * INTS + 3) !== TAKEN) return false; // the worker is there already
        continue;
      }
      try {
        await this.fallbacks[e]!();
      } catch (err) {
        this.taken[e] = err;
      }
      return true;
    }
    return false;
  }

  /** Waits (at most a second) for the worker to count past `done`. */
  private async sleep(done: number): Promise<void> {
    Atomics.store(this.ctl, WAITING, 1);
    if (this.native) {
      this.native.wait(done, 1000);
    } else {
      const w = waitAsync(this.ctl, DONE, done, 1000);
      if (w.async) await w.value;
    }
    Atomics.store(this.ctl, WAITING, 0);
  }

  /** Wakes the worker if it sleeps, once: on a busy VM a thread woken may take a while to run. */
  private wake(): void {
    if (Atomics.compareExchange(this.ctl, SLEEPING, 1, 0) !== 1) return;
    if (this.native) this.native.wake();
    else Atomics.notify(this.ctl, TAIL);
  }

  /** Stops the worker. Jobs not settled are dropped (the send is ending or failing). */
  close(): void {
    this.usable = false;
    Atomics.store(this.ctl, STOP, 1);
    Atomics.notify(this.ctl, TAIL);
    this.native?.stop();
    (this.thread ?? this.o.thread)?.close();
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    if (!this.o.thread && this.o.native !== false) {
      this.native = NativeFill.start(this.shared, this.o.arena, this.o.path, Object.values(LAYOUT));
      if (this.native) return;
    }
    this.thread = this.o.thread ?? new FillThread(this.o.modules);
    this.thread.run({ shared: this.shared, arena: this.o.arena, path: this.o.path, layout: LAYOUT }, () => this.fail());
  }

  /** The worker cannot work: what is out is done in line (settleTo), nothing more is posted. */
  private fail(): void {
    this.usable = false;
    Atomics.notify(this.ctl, DONE); // a send waiting for it looks again
  }
}
