import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { alignedShared } from '../util/aligned.js';
import { NATIVE_ADDON_PATH } from '../util/native-addon.js';
import { copyShared } from '../util/shared-copy.js';

/**
 * Image writes performed on a second thread, in order, while the caller goes on (the kernel's writeback,
 * for an offline writer). The caller's bytes are copied into a shared ring, so it may reuse its buffers at
 * once. A failure is sticky: the thread performs nothing after it, and the caller learns of it at its next
 * write, read or flush at the latest — a flush never returns before every earlier write is on disk.
 *
 * Shared state: ctrl[0] = records queued (producer), ctrl[1] = records done (worker), ctrl[2] = failed,
 * ctrl[5] = the worker has started, ctrl[3] / ctrl[4] = the worker / the producer is about to sleep: the other side only wakes (a futex
 * call) a thread that may be sleeping. Sequentially consistent atomics make that safe: the sleeper sets
 * its flag before Atomics.wait re-checks the counter, the waker stores the counter before reading the flag.
 * Each record is [op, position, length, image offset, lent buffer] in `recs`: the position is in the ring, or
 * in lent buffer number n (>= 0; -1: the ring). Counters wrap as int32.
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
const OP_WRITE = 1;
const OP_FSYNC = 2;
const OP_DIRECT = 3;
/** A direct write (as OP_DIRECT) from a lent buffer. */
const OP_LENT = 4;
/** The file extended to the record's offset (a larger device), in order with the writes. */
export const OP_EXTEND = 5;
/** Bytes copied from another file (its descriptor in the record's last field, the position its offset) with copy_file_range. */
const OP_COPY = 6;
/** Fields per record. */
const REC = 5;
const SLOTS = 4096; // power of two: slot = counter & (SLOTS - 1) also for wrapped (negative) counters
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
/** Direct writes in flight at once: one at a time, the disk idled between them (docs/performance.md, recv13). */
const DIRECT_DEPTH = 2;
/** Direct I/O needs its memory aligned: each direct record starts on a block boundary of the (page-aligned) ring. */
const DIRECT_ALIGN = 4096;
/** How long a flush waits for the thread to start before giving up (it takes milliseconds). */
const START_TIMEOUT_MS = 30_000;

/**
 * Plain JS run by the worker (eval: a .ts worker file would not load under the test runner; dynamic
 * imports work whether node treats eval code as CommonJS or as a module). Every WRITEBACK_BYTES it starts
 * an fdatasync in libuv's pool while writing goes on, so the data reaches the disk during the receive
 * instead of all at the final fsync (Atomics.waitAsync, which would keep the event loop turning while
 * idle, was not woken reliably by the producer's notify: the thread polls while a sync is out). Their errors count as failures
 * (an fsync reports a writeback error only once per file: the final fsync would not see it again).
 */
const WORKER = `(async () => {
const fs = await import('node:fs');
const { workerData, receiveMessageOnPort } = await import('node:worker_threads');
const { fd, ctrlBuf, recBuf, dataBuf, port, writebackBytes, addonPath } = workerData;
let directFd = workerData.directFd;
const ctrl = new Int32Array(ctrlBuf), recs = new Float64Array(recBuf), data = new Uint8Array(dataBuf);
let done = 0, failed = false, syncing = 0, unsynced = 0;
// lent buffers by number, each sent once through the port before the first record that uses it
const lent = [];
const lentBuf = (n) => {
  while (lent[n] === undefined) {
    const m = receiveMessageOnPort(port);
    if (m === undefined) throw new Error('lent buffer ' + n + ' never arrived');
    lent[m.message.n] = new Uint8Array(m.message.buf);
  }
  return lent[n];
};
const fail = (op, len, off, e) => {
  if (failed) return;
  // the message goes out before the flag: whoever sees the flag finds the message
  failed = true;
  port.postMessage({ op, len, off, message: String(e && e.message), code: e && e.code });
  Atomics.store(ctrl, 2, 1);
};
// copy_file_range through the addon, loaded at the first copy; where it is missing or the kernel refuses
// (another file system type, an old kernel), through a buffer
let copyRange;
let copyBuf;
const copy = async (src, from, len, off) => {
  if (copyRange === undefined) {
    copyRange = null;
    if (process.env.BTRFS_TS_NATIVE !== 'off') try {
      const { createRequire } = await import('node:module');
      const a = createRequire(addonPath)(addonPath);
      if (typeof a.copyFileRange === 'function') copyRange = a.copyFileRange;
    } catch {}
  }
  let done = 0;
  while (done < len && copyRange) {
    let n;
    try {
      n = copyRange(src, from + done, fd, off + done, len - done);
    } catch (e) {
      if (e.code !== 'EXDEV' && e.code !== 'EINVAL' && e.code !== 'ENOSYS' && e.code !== 'EOPNOTSUPP') throw e;
      copyRange = null;
      break;
    }
    if (n === 0) throw new Error('the input file ends before byte ' + (from + len));
    done += n;
  }
  while (done < len) {
    if (!copyBuf || copyBuf.length < len - done) copyBuf = Buffer.allocUnsafe(Math.max(len - done, 1 << 20));
    const n = fs.readSync(src, copyBuf, 0, len - done, from + done);
    if (n === 0) throw new Error('the input file ends before byte ' + (from + len));
    for (let w = 0; w < n; ) w += fs.writeSync(fd, copyBuf, w, n - w, off + done + w);
    done += n;
  }
};
const writeback = () => {
  syncing++;
  fs.fdatasync(fd, (e) => { syncing--; if (e) fail(${OP_FSYNC}, 0, 0, e); });
};
Atomics.store(ctrl, 5, 1);
// direct writes in flight (libuv's pool), oldest first; a record counts as done once it and all before it are
const flying = [];
let taken = 0;
const finish = () => {
  done = (done + 1) | 0;
  Atomics.store(ctrl, 1, done);
  if (Atomics.load(ctrl, 4) !== 0) Atomics.notify(ctrl, 1);
};
const land = async () => { await flying.shift().p; finish(); };
// the rest of a direct write the disk did not take whole (or all of it, once direct I/O is refused) through the page cache
const rest = (src, pos, len, off, n) => {
  if (n >= len) return;
  for (; n < len; ) n += fs.writeSync(fd, src, pos + n, len - n, off + n);
  unsynced += len;
};
const direct = (src, pos, len, off) => new Promise((res) => {
  fs.write(directFd, src, pos, len, off, (e, n) => {
    try {
      // the file system (or the memory, where WebAssembly is missing) refuses direct I/O: the page cache from now on
      if (e && e.code !== 'EINVAL') throw e;
      if (e) directFd = -1;
      if (!failed) rest(src, pos, len, off, e ? 0 : n);
    } catch (err) {
      fail(${OP_DIRECT}, len, off, err);
    }
    res();
  });
});
for (;;) {
  const queued = Atomics.load(ctrl, 0);
  if (queued === taken) {
    if (flying.length > 0) { await land(); continue; }
    // a background fdatasync's callback needs this thread's event loop: poll while one is out
    if (syncing > 0) { await new Promise((res) => setTimeout(res, 1)); continue; }
    Atomics.store(ctrl, 3, 1);
    Atomics.wait(ctrl, 0, taken);
    Atomics.store(ctrl, 3, 0);
    continue;
  }
  while (taken !== queued) {
    const r = (taken & ${SLOTS - 1}) * ${REC};
    const op = recs[r], pos = recs[r + 1], len = recs[r + 2], off = recs[r + 3];
    taken = (taken + 1) | 0;
    let src = data;
    if (op === ${OP_LENT}) {
      try {
        src = lentBuf(recs[r + 4]);
      } catch (e) {
        fail(op, len, off, e);
      }
    }
    if ((op === ${OP_DIRECT} || op === ${OP_LENT}) && directFd >= 0 && !failed) {
      // the disk takes the next while one is written (one at a time it idled between them); a write
      // over one still in flight waits for it, as every other record waits for all of them
      while (flying.length >= ${DIRECT_DEPTH} || flying.some((f) => f.off < off + len && off < f.off + f.len)) await land();
      flying.push({ p: direct(src, pos, len, off), off, len });
      continue;
    }
    while (flying.length > 0) await land();
    if (op === ${OP_FSYNC}) while (syncing > 0) await new Promise((res) => setImmediate(res));
    if (!failed) {
      try {
        if (op === ${OP_DIRECT} || op === ${OP_LENT}) {
          rest(src, pos, len, off, 0);
        } else if (op === ${OP_WRITE} || op === ${OP_COPY}) {
          if (op === ${OP_COPY}) await copy(recs[r + 4], pos, len, off);
          else for (let n = 0; n < len; ) n += fs.writeSync(fd, data, pos + n, len - n, off + n);
          unsynced += len;
          if (writebackBytes > 0 && unsynced >= writebackBytes) {
            if (syncing > 0) await new Promise((res) => setImmediate(res));
            if (syncing === 0) {
              unsynced = 0;
              writeback();
            }
          }
        } else if (op === ${OP_EXTEND}) {
          // never a cut: the file may already reach past it (a write beyond the old end)
          if (fs.fstatSync(fd).size < off) fs.ftruncateSync(fd, off);
        } else {
          fs.fsyncSync(fd);
          unsynced = 0;
        }
      } catch (e) {
        fail(op, len, off, e);
      }
    }
    finish();
  }
}
})();
`;

export interface WriteFailure {
  op: number;
  len: number;
  off: number;
  message: string;
  code?: string;
}

export class WriteBehind {
  private readonly ctrl: Int32Array;
  private readonly recs: Float64Array;
  private readonly data: Uint8Array;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private queued = 0;
  private head = 0;
  private used = 0;
  /** Ring bytes taken by each record not yet done, oldest first (wrap padding counted in). */
  private readonly taken: number[] = [];
  private takenFirst = 0;
  private retired = 0;
  private unsent = 0;
  private waitedForStart = 0;
  /** Lent buffers the thread has been given, by their number there. */
  private readonly lentNumbers = new Map<SharedArrayBuffer, number>();
  private failure: WriteFailure | undefined;

  /**
   * `directFd`: the same file opened with O_DIRECT (-1: none), for large aligned writes; the caller closes
   * it after stop().
   */
  constructor(fd: number, readonly capacity = 8 << 20, writebackBytes = WRITEBACK_BYTES, private readonly directFd = -1) {
    const ctrlBuf = new SharedArrayBuffer(32);
    const recBuf = new SharedArrayBuffer(SLOTS * REC * 8);
    // page-aligned, so that a direct write's memory is aligned wherever a record starts on a block
    const dataBuf = alignedShared(capacity);
    this.ctrl = new Int32Array(ctrlBuf);
    this.recs = new Float64Array(recBuf);
    this.data = new Uint8Array(dataBuf);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER, { eval: true, workerData: { fd, directFd, ctrlBuf, recBuf, dataBuf, port: port2, writebackBytes, addonPath: NATIVE_ADDON_PATH }, transferList: [port2],
      // it allocates next to nothing: a small heap keeps its memory small
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8 } });
    // an idle writer thread must not keep the process alive; close() waits for it where it matters
    this.worker.unref();
    // a thread that fails to start is noticed by the waits (ctrl[5] stays 0); its error event must not
    // crash the process meanwhile
    this.worker.on('error', () => undefined);
    this.port.unref();
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
    if (!(buf instanceof SharedArrayBuffer) || len < DIRECT_MIN || len % DIRECT_ALIGN !== 0 || off % DIRECT_ALIGN !== 0 || bytes.byteOffset % DIRECT_ALIGN !== 0 || this.dead()) return -1;
    let n = this.lentNumbers.get(buf);
    if (n === undefined) {
      n = this.lentNumbers.size;
      this.lentNumbers.set(buf, n);
      // sent before any record that names it: the thread takes it from the port when it meets the number
      this.port.postMessage({ n, buf });
    }
    for (let at = 0; at < len; at += LENT_PIECE) {
      this.waitFor(0);
      if (this.dead()) return -1;
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
    while (!this.isDone(seq) && !this.dead()) this.sleep(Atomics.load(this.ctrl, 1));
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
    if (this.dead()) return false;
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
    if (this.dead()) return false;
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
    if (this.dead()) return false;
    this.push(OP_EXTEND, 0, 0, size, 0);
    return true;
  }

  /** Queues an fsync and waits until it and everything before it are done. */
  flush(): void {
    this.waitFor(0);
    if (this.dead()) return;
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
      if (done === this.queued || this.dead()) break;
      this.sleep(done);
    }
    this.reclaim();
  }

  /** The first failure of the thread, once it is known (sticky). */
  failed(): WriteFailure | undefined {
    if (this.failure || Atomics.load(this.ctrl, 2) === 0) return this.failure;
    const m = receiveMessageOnPort(this.port);
    this.failure = (m?.message as WriteFailure | undefined) ?? { op: 0, len: 0, off: 0, message: 'write-behind thread failed' };
    return this.failure;
  }

  /** Drains and stops the thread. */
  stop(): void {
    this.drain();
    this.failed(); // read before the port closes
    void this.worker.terminate();
    this.port.close();
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
      if (this.dead()) return;
      const done = Atomics.load(this.ctrl, 1);
      if (done === this.retired) this.sleep(done);
      this.reclaim();
    }
  }

  /** The thread never started (its failure is set): nothing queued will be done. */
  private dead(): boolean {
    return this.failure !== undefined && Atomics.load(this.ctrl, 5) === 0;
  }

  private wake(): void {
    this.unsent = 0;
    if (Atomics.load(this.ctrl, 3) !== 0) Atomics.notify(this.ctrl, 0);
  }

  /** Waits for the thread to finish another record after `done`. */
  private sleep(done: number): void {
    this.wake();
    Atomics.store(this.ctrl, 4, 1);
    if (Atomics.wait(this.ctrl, 1, done, 1000) === 'timed-out' && Atomics.load(this.ctrl, 5) === 0) {
      // a thread that never started would leave this wait forever
      this.waitedForStart += 1000;
      if (this.waitedForStart >= START_TIMEOUT_MS) this.failure ??= { op: OP_WRITE, len: 0, off: 0, message: 'the write-behind thread did not start' };
    }
    Atomics.store(this.ctrl, 4, 0);
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
