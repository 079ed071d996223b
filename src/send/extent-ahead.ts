import { closeSync, openSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { CodecError } from '../errors.js';
import { BTRFS_MAX_UNCOMPRESSED, type BtrfsCompressType, initCodecs } from '../compress/index.js';
import { loadCsum } from '../image/structs/csum.js';
import { BTRFS_COMPRESS_NONE, BTRFS_FILE_EXTENT_INLINE } from '../image/structs.js';
import type { ExtentRef } from './extent-data.js';
import { alignedShared } from '../util/aligned.js';
import { placeInto } from '../util/bytes.js';
import { nodeWorkerThreads } from '../util/lazy-builtins.js';
import { EXTENT_WORKER } from './extent-worker.js';
import { claimJob, JOB_SEND, JOB_SEQ_MASK, JOB_WAITING, jobWord, type Job, type JobAnswer, type JobContext, runJob } from './extent-job.js';

/**
 * Compressed extents read, verified and (for a send that writes decoded data) decoded on a second thread
 * ahead of the send — the kernel's readahead, for a sender whose checksums and decompression run on one
 * JavaScript thread otherwise. The full send announces the extents it is about to meet (`ahead`); the
 * worker reads their stored bytes from the image file into a slot of memory shared with it, checks every
 * sector against the checksums the send looked up, and decodes them into the same slot when asked; the
 * send claims the result (`stored`, `decoded`) when it gets there. SLOTS extents at most are out at a
 * time, each slot holding at most 128 KiB stored and 128 KiB decoded: memory stays bounded, and no
 * extent's bytes are allocated, copied or transferred between the threads (messages carry slot numbers,
 * a few jobs or results each). When the send would wait for an extent the worker has not finished, it
 * does jobs the worker has not begun itself (that one, else the last announced): decoding protocol 1's
 * zstd extents keeps the worker busy longer than the send's own work keeps the send.
 *
 * Only the plain path runs on the worker: anything unusual — a checksum that does not match on any copy,
 * a sector without one, an image that is not a file the worker can open (the bytes are then read on the
 * send's thread into the slot), a worker that cannot load its modules — leaves the extent to the send's
 * own reading and decoding, which report it as they always do.
 */

/** Extents out at a time. */
export const SLOTS = 16;
/**
 * Announcements go to the worker in batches of this many (fewer when it is about to run dry), results
 * come back per batch: each message wakes the other thread, which cost more than a small extent's work.
 */
const BATCH = 4;
/** Stored and decoded bytes of one extent at most (btrfs compresses at most 128 KiB into at most as much). */
const SLOT_SIZE = BTRFS_MAX_UNCOMPRESSED;
/**
 * Then its sectors' checksums (at most 32 sectors of 4 KiB, 32 bytes each) and which sectors have one:
 * shared too, as a typed array in a message costs ~6 times a plain one (structured clone).
 */
const SUMS_SIZE = 32 * 32;
const SLOT_BYTES = 2 * SLOT_SIZE + SUMS_SIZE + 32;

/** Where an extent's stored bytes are and what they must checksum to (the worker reads and checks them). */
export interface StoredJob {
  /** Physical offsets of its copies (two on DUP data), tried in order. */
  copies: bigint[];
  /** Per-sector checksums (at most 32 sectors) and which sectors have one; undefined when the inode is NODATASUM. */
  sums?: { sums: Uint8Array; have: Uint8Array };
}

/** What a claim gives: views into the slot, valid until the send's next claim. */
export interface Claimed {
  stored: Uint8Array;
  /** The checksums the stored bytes matched (undefined when not verified). */
  sums?: Uint8Array;
  decoded?: Uint8Array;
}

interface Pending {
  key: string;
  slot: number;
  len: number;
  sums?: Uint8Array;
  decode: boolean;
  ramBytes: number;
  job: Job;
  /** Resolves true when done, false when the worker left the extent to the send (see above). */
  result: Promise<boolean>;
}

const keyOf = (x: ExtentRef): string => `${x.fe.disk_bytenr}:${x.fe.disk_num_bytes}:${x.fe.compression}:${x.fe.ram_bytes}`;

export interface ExtentAheadOptions {
  /** The image file the worker reads (undefined: the send reads into the slot itself). */
  path?: string;
  csumType: number;
  sectorsize: number;
  /** Decode the extents too (a send writing decoded data), not only read and check them. */
  decode: boolean;
  /** URL of the compiled modules' folder (dist/) the worker imports from (tests point it at dist/). */
  modules?: string;
}

export class ExtentAhead {
  private worker: Worker | undefined;
  private usable = true;
  private readonly waiting = new Map<number, { resolve: (ok: boolean) => void; reject: (e: Error) => void }>();
  private readonly queue: Pending[] = [];
  /** Announced jobs not yet sent to the worker, and how many sent ones it has not answered. */
  private batch: Job[] = [];
  private sent = 0;
  /** Page-aligned, so that no slot starts in the first 32 bytes of a page (util/aligned.ts: such reads copy at a quarter speed). */
  private readonly shared = alignedShared(SLOTS * SLOT_BYTES);
  private readonly free: number[] = [...Array(SLOTS).keys()];
  /** The slot whose bytes the send holds now: given back when it claims the next extent. */
  private held: number | undefined;
  /** Job word per slot (extent-job.ts): whoever swaps it from the job's JOB_WAITING does the job. */
  private readonly states = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
  private seq = 0;
  /** What the send needs to do jobs itself (loaded when the worker starts; undefined while loading or when it cannot). */
  private local: JobContext | undefined;
  private loading: Promise<void> | undefined;
  /** Jobs the send did itself (tests). */
  takenHere = 0;

  constructor(private readonly o: ExtentAheadOptions) {}

  /** Whether `x` goes through the worker: a compressed regular extent whose stored and decoded bytes fit a slot. */
  static wants(x: ExtentRef): boolean {
    return x.fe.type !== BTRFS_FILE_EXTENT_INLINE && x.fe.disk_bytenr !== 0n && x.fe.compression !== BTRFS_COMPRESS_NONE
      && x.fe.ram_bytes <= BigInt(SLOT_SIZE) && x.fe.disk_num_bytes <= BigInt(SLOT_SIZE);
  }

  /** Whether another extent may be announced now. */
  get room(): boolean {
    return this.usable && this.free.length > 0;
  }

  /**
   * Announces an extent the send will reach soon. `job`: where its bytes are and their checksums; `read`
   * (used when the worker cannot read the image itself) puts its verified stored bytes into the buffer it
   * is given or returns them elsewhere.
   */
  async ahead(x: ExtentRef, job: () => Promise<StoredJob>, read: (into: Uint8Array) => Promise<Uint8Array>): Promise<void> {
    if (!this.room || !ExtentAhead.wants(x)) return;
    const key = keyOf(x);
    if (this.queue.some((p) => p.key === key)) return;
    const slot = this.free.pop()!;
    const len = Number(x.fe.disk_num_bytes);
    const input = this.view(slot, 0, SLOT_SIZE);
    let msg: { copies?: number[]; sectors?: number };
    let sums: Uint8Array | undefined;
    try {
      if (this.o.path !== undefined) {
        const j = await job();
        if (j.sums) {
          sums = this.view(slot, 2 * SLOT_SIZE, j.sums.sums.length);
          sums.set(j.sums.sums);
          this.view(slot, 2 * SLOT_SIZE + SUMS_SIZE, j.sums.have.length).set(j.sums.have);
        }
        msg = { copies: j.copies.map(Number), ...(j.sums ? { sectors: j.sums.have.length } : {}) };
      } else {
        const got = await read(input);
        placeInto(input, got.subarray(0, len));
        msg = {};
      }
    } catch (e) {
      this.free.push(slot);
      throw e;
    }
    this.start();
    const result = new Promise<boolean>((resolve, reject) => this.waiting.set(slot, { resolve, reject }));
    result.catch(() => undefined); // an unclaimed failure is not an unhandled rejection; a claim sees it
    const ramBytes = Number(x.fe.ram_bytes);
    this.seq = (this.seq + 1) & JOB_SEQ_MASK;
    const work: Job = { slot, seq: this.seq, len, ...msg, ...(this.o.decode ? { decode: { type: x.fe.compression as BtrfsCompressType, ramBytes } } : {}) };
    Atomics.store(this.states, slot, jobWord(this.seq, JOB_WAITING));
    this.batch.push(work);
    this.queue.push({ key, slot, len, ...(sums ? { sums } : {}), decode: this.o.decode, ramBytes, job: work, result });
    if (this.batch.length >= BATCH || this.sent < BATCH) this.flush();
  }

  /** Sends the announced jobs not sent yet. */
  private flush(): void {
    if (!this.batch.length || !this.worker) return;
    this.worker.postMessage(this.batch);
    this.sent += this.batch.length;
    this.batch = [];
  }

  /**
   * The extent's bytes when it was announced and the worker got them (earlier announcements not claimed
   * are dropped: the send went past them); else undefined and the send reads (and decodes) it itself.
   */
  async claim(x: ExtentRef): Promise<Claimed | undefined> {
    this.release();
    const key = keyOf(x);
    const at = this.queue.findIndex((p) => p.key === key);
    if (at < 0) return undefined;
    const skipped = this.queue.splice(0, at + 1);
    const p = skipped.pop()!;
    this.flush(); // it may still be in the batch
    for (const s of skipped) void s.result.then(() => this.free.push(s.slot), () => this.free.push(s.slot));
    if (this.o.decode) await this.help(p);
    let ok: boolean;
    try {
      ok = await p.result;
    } catch (e) {
      this.free.push(p.slot);
      if ((e as { unavailable?: boolean }).unavailable) return undefined;
      const c = e as { code?: string; message: string };
      // the codec's own error, with the extent named as in-line decoding names it
      throw new CodecError(c.code ?? 'CODEC', `${x.what}: ${c.message}`);
    }
    if (!ok) {
      this.free.push(p.slot);
      return undefined;
    }
    this.held = p.slot;
    return {
      stored: this.view(p.slot, 0, p.len),
      ...(p.sums ? { sums: p.sums } : {}),
      ...(p.decode ? { decoded: this.view(p.slot, SLOT_SIZE, p.ramBytes) } : {}),
    };
  }

  /**
   * Loads what the send needs to do jobs itself (the codecs, the checksum, its own descriptor of the
   * image), started with the worker. A failure leaves the send waiting for the worker, as before.
   */
  ready(): Promise<void> {
    this.loading ??= Promise.all([initCodecs(), loadCsum(this.o.csumType)]).then(([, algo]) => {
      if (!this.usable) return;
      this.local = {
        shared: this.shared, slotSize: SLOT_SIZE, slotBytes: SLOT_BYTES, sumsSize: SUMS_SIZE, algo, sectorsize: this.o.sectorsize,
        ...(this.o.path !== undefined ? { fd: openSync(this.o.path, 'r') } : {}),
      };
    }, () => undefined);
    return this.loading;
  }

  /**
   * While `p` is not done: takes a job the worker has not begun — `p`'s, else the last announced one's —
   * and does it here. Only for decoding sends: reading and checking alone is too little work to share.
   */
  private async help(p: Pending): Promise<void> {
    if (!this.local) return;
    while (this.waiting.has(p.slot)) {
      let q: Pending | undefined = this.take(p) ? p : undefined;
      for (let i = this.queue.length - 1; q === undefined && i >= 0; i--) if (this.take(this.queue[i]!)) q = this.queue[i];
      if (!q) return;
      this.takenHere++;
      this.settle(runJob(this.local, q.job));
      await new Promise(setImmediate); // lets the worker's answers in
    }
  }

  /** Whether the send got `q`'s job: swapped from waiting to taken before the worker began it. */
  private take({ slot, job: { seq } }: Pending): boolean {
    return claimJob(this.states, slot, seq, JOB_SEND);
  }

  private settle(d: JobAnswer): void {
    const w8 = this.waiting.get(d.slot);
    this.waiting.delete(d.slot);
    if (!w8) return;
    if (d.error) w8.reject(Object.assign(new Error(d.error.message), { code: d.error.code }));
    else w8.resolve(d.ok === true);
  }

  /** Stops the worker; pending results are dropped. */
  close(): void {
    if (this.local?.fd !== undefined) closeSync(this.local.fd);
    this.local = undefined;
    void this.worker?.terminate();
    this.worker = undefined;
    this.usable = false;
    this.queue.length = 0;
    this.batch = [];
  }

  private view(slot: number, at: number, len: number): Uint8Array {
    return new Uint8Array(this.shared, slot * SLOT_BYTES + at, len);
  }

  private release(): void {
    if (this.held !== undefined) this.free.push(this.held);
    this.held = undefined;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    if (this.o.decode) void this.ready();
    const modules = this.o.modules ?? new URL('../', import.meta.url).href;
    const w = new (nodeWorkerThreads().Worker)(EXTENT_WORKER, {
      eval: true,
      workerData: {
        modules, shared: this.shared, states: this.states.buffer, slotSize: SLOT_SIZE, slotBytes: SLOT_BYTES, sumsSize: SUMS_SIZE, path: this.o.path, csumType: this.o.csumType, sectorsize: this.o.sectorsize,
      },
    });
    w.unref(); // never what keeps the process alive
    w.on('message', (m: JobAnswer[] | { unavailable: string }) => {
      if (!Array.isArray(m)) return this.fail(Object.assign(new Error(m.unavailable), { unavailable: true }));
      this.sent -= m.length;
      for (const d of m) if (!d.taken) this.settle(d);
    });
    w.on('error', (e) => this.fail(Object.assign(e, { unavailable: true })));
    this.worker = w;
    return w;
  }

  /** The worker is gone or cannot work: whatever waits is read in line, nothing more is announced. */
  private fail(e: Error): void {
    this.usable = false;
    for (const w8 of this.waiting.values()) w8.reject(e);
    this.waiting.clear();
  }
}
