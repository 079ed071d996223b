import { copyShared } from '../util/shared-copy.js';
import { type WriteFailure, WriterThread } from './write-behind-thread.js';
import { OP_COPY, OP_DIRECT, OP_EXTEND, OP_FSYNC, OP_LENT, OP_WRITE, REC, SLOTS } from './write-behind-worker.js';

/**
 * Image writes performed on a second thread, in order, while the caller goes on (the kernel's writeback,
 * for an offline writer). The caller's bytes are copied into a shared ring, so it may reuse its buffers at
 * once. A failure is sticky: the thread performs nothing after it, and the caller learns of it at its next
 * write, read or flush at the latest — a flush never returns before every earlier write is on disk.
 *
 * This module is the queue: which records go into the ring, where, and when the thread is woken for them.
 * The shared state and the waits between the two sides are write-behind-thread.ts's, the thread's script
 * write-behind-worker.ts's.
 *
 * Large page-aligned writes (a receive's gathered data extents) go through a second descriptor opened
 * with O_DIRECT when the caller has one: the disk takes them straight from the ring while the next are
 * copied in, instead of the thread copying them into the page cache first and a background fdatasync
 * writing them out in bursts. big-v1 (1.2 GB of plain data) through the page cache kept the writer
 * thread busy ~0.5 s of CPU and the disk idle between syncs (docs/performance.md, recv12). Up to
 * DIRECT_DEPTH of them are in flight at once (libuv's pool), never two over the same bytes; every other
 * record waits for them, so the file sees the writes in queue order.
 *
 * A caller may also lend such a write's bytes instead of having them copied (lend): a SharedArrayBuffer
 * that the thread is given once and then writes from directly, until the caller waits for those records
 * (doneThrough) before changing its bytes. The receive's gather buffers go that way: copying 1.2 GB of
 * big-v1 into the ring was ~0.1-0.3 s of the main thread, its critical path.
 */
/** Bytes written between background fdatasync calls (0: none). */
const WRITEBACK_BYTES = 32 << 20;
/**
 * Writes at least this large, of whole 4 KiB blocks at a 4 KiB image offset, go O_DIRECT (smaller ones,
 * tree blocks and encoded extents, through the page cache: one at a time to the disk they were slower).
 */
const DIRECT_MIN = 1 << 20;
/** A direct write is queued in pieces of this size, so its ring space comes back as the disk takes each. */
const DIRECT_PIECE = 1 << 20;
/**
 * A lent write (a gather buffer, at most 8 MiB) is queued whole: it takes no ring space to give back piece
 * by piece, and two 8 MiB direct writes in flight keep the disk busier than two of 1 MiB. big-v1, 5 rounds
 * with the kernel (quiet; the receive waits on the disk): medians 1.84 → 1.55 s, the kernel 2.04 s; `dd
 * oflag=direct`, two at a time: 1125 MB/s in 1 MiB writes, 1426 in 4 MiB (docs/performance.md, tenth session).
 */
const LENT_PIECE = 8 << 20;
/** Direct I/O needs its memory aligned: each direct record starts on a block boundary of the (page-aligned) ring. */
const DIRECT_ALIGN = 4096;

export class WriteBehind {
  private readonly thread: WriterThread;
  // the thread's shared arrays, read and written on every record
  private readonly ctrl: Int32Array;
  private readonly recs: Float64Array;
  private readonly data: Uint8Array;
  private queued = 0;
  private head = 0;
  private used = 0;
  /** Ring bytes taken by each record not yet done, oldest first (wrap padding counted in). */
  private readonly taken: number[] = [];
  private takenFirst = 0;
  private retired = 0;
  private unsent = 0;

  /**
   * `directFd`: the same file opened with O_DIRECT (-1: none), for large aligned writes; the caller closes
   * it after stop().
   */
  constructor(fd: number, readonly capacity = 8 << 20, writebackBytes = WRITEBACK_BYTES, private readonly directFd = -1) {
    this.thread = new WriterThread(fd, capacity, writebackBytes, directFd);
    this.ctrl = this.thread.ctrl;
    this.recs = this.thread.recs;
    this.data = this.thread.data;
  }

  /** Queues a write of `bytes` at image offset `off`; false if it is too large for the ring. */
  write(off: number, bytes: Uint8Array): boolean {
    const len = bytes.length;
    if (len > this.capacity) return false;
    // whole blocks at a block offset
    if (this.directFd >= 0 && this.capacity >= DIRECT_PIECE + DIRECT_ALIGN && len >= DIRECT_MIN && len % DIRECT_ALIGN === 0 && off % DIRECT_ALIGN === 0) {
      for (let at = 0; at < len; at += DIRECT_PIECE) {
        const piece = bytes.subarray(at, Math.min(len, at + DIRECT_PIECE));
        // false only when the thread is dead: the caller then drains (learning of the failure)
        if (!this.place(off + at, piece, OP_DIRECT)) return false;
      }
      return true;
    }
    return this.place(off, bytes, OP_WRITE);
  }

  /**
   * Queues a write of `bytes` (in a SharedArrayBuffer) at `off` from the caller's memory, without a copy:
   * the number to wait for with doneThrough() before changing those bytes, or -1 when this write cannot
   * be lent (not a direct write: under 1 MiB, not whole blocks at block offsets in memory and image) —
   * write() it instead.
   */
  lend(off: number, bytes: Uint8Array): number {
    const len = bytes.length;
    const buf = bytes.buffer;
    if (!(buf instanceof SharedArrayBuffer) || len < DIRECT_MIN || len % DIRECT_ALIGN !== 0 || off % DIRECT_ALIGN !== 0 || bytes.byteOffset % DIRECT_ALIGN !== 0 || this.thread.dead()) return -1;
    const n = this.thread.lentNumber(buf);
    for (let at = 0; at < len; at += LENT_PIECE) {
      this.waitFor(0);
      if (this.thread.dead()) return -1;
      this.push(OP_LENT, bytes.byteOffset + at, Math.min(LENT_PIECE, len - at), off + at, 0, n);
    }
    return this.queued;
  }

  /** Whether the records up to `seq` (a lend() result) are done. */
  isDone(seq: number): boolean {
    // counters wrap: done has reached seq when it is not behind it
    return ((Atomics.load(this.ctrl, 1) - seq) | 0) >= 0;
  }

  /** Waits until the records up to `seq` (a lend() result) are done: the lent bytes may change again. */
  doneThrough(seq: number): void {
    while (!this.isDone(seq) && !this.thread.dead()) this.sleep(Atomics.load(this.ctrl, 1));
    this.reclaim();
  }

  /** Copies `bytes` into the ring and queues record `op` (OP_WRITE, or OP_DIRECT: placed at a block of the ring) for them. */
  private place(off: number, bytes: Uint8Array, op: number): boolean {
    const len = bytes.length;
    // a direct write's memory must be block-aligned: its place in the (page-aligned) ring starts a block
    let pos = op === OP_DIRECT ? this.head + (-this.head & (DIRECT_ALIGN - 1)) : this.head;
    let wraps = pos + len > this.capacity;
    if (wraps) {
      pos = 0;
      if (len > this.head) {
        // neither the end nor the start of the ring has room: wait until it is empty and start over
        this.drain();
        this.head = 0;
        wraps = false;
      }
    }
    const need = wraps ? this.capacity - this.head + pos + len : pos - this.head + len;
    this.waitFor(need);
    if (this.thread.dead()) return false;
    copyShared(this.data, bytes, pos);
    this.head = pos + len === this.capacity ? 0 : pos + len;
    this.push(op, pos, len, off, need);
    return true;
  }

  /**
   * Queues a copy of `len` bytes at `from` of the open file `srcFd` to image offset `off` (copy_file_range,
   * or through a buffer on the thread), with no copy into the ring: the source must keep those bytes and
   * stay open until the record is done (drain, stop).
   */
  copyFrom(off: number, srcFd: number, from: number, len: number): boolean {
    this.waitFor(0);
    if (this.thread.dead()) return false;
    this.push(OP_COPY, from, len, off, 0, srcFd);
    return true;
  }

  /**
   * Queues extending the file to `size` bytes. On the caller's thread an ftruncate waits for the direct
   * writes in flight (the file system drains them before a size change): 20 ms of a 0.66 s receive of
   * comp-zstd-v2, at the commit that makes room for relocation (docs/performance.md, eleventh session).
   */
  extend(size: number): boolean {
    this.waitFor(0);
    if (this.thread.dead()) return false;
    this.push(OP_EXTEND, 0, 0, size, 0);
    return true;
  }

  /** Queues an fsync and waits until it and everything before it are done. */
  flush(): void {
    this.waitFor(0);
    if (this.thread.dead()) return;
    this.push(OP_FSYNC, 0, 0, 0, 0);
    this.drain();
  }

  /**
   * Whether a queued write that may not be done yet overlaps [off, off + len): a read elsewhere can go to
   * the file at once (the thread writes nothing but what is queued), instead of waiting for the ring to
   * empty — reads of evicted tree blocks came in between writes all the time with many files.
   */
  overlaps(off: number, len: number): boolean {
    this.reclaim();
    const end = off + len;
    for (let i = this.retired; i !== this.queued; i = (i + 1) | 0) {
      const r = (i & (SLOTS - 1)) * REC;
      if (this.recs[r] === OP_FSYNC || this.recs[r] === OP_EXTEND) continue;
      const o = this.recs[r + 3]!;
      if (o < end && off < o + this.recs[r + 2]!) return true;
    }
    return false;
  }

  /** Waits until every queued record is done. */
  drain(): void {
    for (;;) {
      const done = Atomics.load(this.ctrl, 1);
      if (done === this.queued || this.thread.dead()) break;
      this.sleep(done);
    }
    this.reclaim();
  }

  /** The first failure of the thread, once it is known (sticky). */
  failed(): WriteFailure | undefined {
    return this.thread.failed();
  }

  /** Drains and stops the thread. */
  stop(): void {
    this.drain();
    this.thread.stop();
  }

  private push(op: number, pos: number, len: number, off: number, need: number, lent = -1): void {
    const r = (this.queued & (SLOTS - 1)) * REC;
    this.recs[r] = op;
    this.recs[r + 1] = pos;
    this.recs[r + 2] = len;
    this.recs[r + 3] = off;
    this.recs[r + 4] = lent;
    this.taken.push(need);
    this.used += need;
    this.queued = (this.queued + 1) | 0;
    Atomics.store(this.ctrl, 0, this.queued);
    // waking the thread costs a futex call and, on a busy machine, often this thread's core (profiles
    // showed ~0.5 ms per wake under load): it is woken once half the ring has gathered, or when this
    // side has to wait for it
    // (a lent write or a copy from a file takes no ring space but is as much work)
    this.unsent += op === OP_LENT || op === OP_COPY ? len : need;
    if (this.unsent >= this.capacity / 2 || op === OP_FSYNC) this.wake();
  }

  /** Blocks until `need` more ring bytes and one record slot are free. */
  private waitFor(need: number): void {
    this.reclaim();
    while (this.used + need > this.capacity || this.taken.length - this.takenFirst >= SLOTS) {
      if (this.thread.dead()) return;
      const done = Atomics.load(this.ctrl, 1);
      if (done === this.retired) this.sleep(done);
      this.reclaim();
    }
  }

  private wake(): void {
    this.unsent = 0;
    this.thread.wake();
  }

  /** Waits for the thread to finish another record after `done`, woken first for what is queued. */
  private sleep(done: number): void {
    this.wake();
    this.thread.sleep(done);
  }

  /** Gives back the ring space of records the thread has finished. */
  private reclaim(): void {
    const done = Atomics.load(this.ctrl, 1);
    while (this.retired !== done) {
      this.used -= this.taken[this.takenFirst++]!;
      this.retired = (this.retired + 1) | 0;
    }
    if (this.takenFirst === this.taken.length) {
      this.taken.length = 0;
      this.takenFirst = 0;
    } else if (this.takenFirst > 1024) {
      this.taken.splice(0, this.takenFirst);
      this.takenFirst = 0;
    }
  }
}
