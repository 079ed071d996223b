import { Worker } from 'node:worker_threads';
import { CodecError } from '../errors.js';
import { decompressExtent } from '../image/read/decompress.js';
import { BTRFS_MAX_UNCOMPRESSED } from '../compress/index.js';
import { BTRFS_COMPRESS_NONE, BTRFS_FILE_EXTENT_INLINE } from '../image/structs.js';
import type { ExtentRef } from './extent-data.js';

/**
 * Compressed extents decoded on a second thread ahead of the send (the kernel's readahead, for a sender
 * whose decompression runs in WebAssembly and takes most of a protocol-1 send's time): the full send
 * announces the extents it is about to meet (`ahead`), their stored bytes are read and verified at once
 * into a slot of memory shared with the worker, the worker decodes them into the same slot, and `decoded`
 * gives a view of the result when the send gets there. SLOTS extents at most are out at a time, each
 * slot holding at most 128 KiB stored and 128 KiB decoded: memory stays bounded, and no extent's bytes
 * are allocated, copied or transferred between the threads (messages carry slot numbers). Anything
 * unusual (the worker cannot load the codecs, an extent not announced) falls back to decoding in line.
 *
 * Plain JS run by the worker (a .ts worker file would not load under the test runner): it imports the
 * codec module by URL; when that fails (the test runner has no compiled module) it says so and the send
 * decodes in line.
 */
const WORKER = `(async () => {
const { parentPort, workerData } = await import('node:worker_threads');
let codecs;
try {
  codecs = await import(workerData.codecs);
  await codecs.initCodecs();
} catch (e) {
  parentPort.postMessage({ unavailable: String(e && e.message) });
  return;
}
const { shared, slotSize } = workerData;
parentPort.on('message', ({ slot, type, len, ramBytes, sectorsize }) => {
  const base = slot * 2 * slotSize;
  const input = new Uint8Array(shared, base, len);
  const output = new Uint8Array(shared, base + slotSize, slotSize);
  try {
    const out = codecs.decompressExtent(type, input, ramBytes, sectorsize, output);
    if (out.buffer !== shared || out.byteOffset !== base + slotSize) output.set(out);
    parentPort.postMessage({ slot });
  } catch (e) {
    parentPort.postMessage({ slot, error: { code: e && e.code, message: String(e && e.message) } });
  }
});
parentPort.postMessage({ ready: true });
})();`;

/** Extents out at a time. */
const SLOTS = 8;
/** Stored and decoded bytes of one extent at most (btrfs compresses at most 128 KiB into at most as much). */
const SLOT_SIZE = BTRFS_MAX_UNCOMPRESSED;

interface Pending {
  key: string;
  slot: number;
  result: Promise<void>;
}

const keyOf = (x: ExtentRef): string => `${x.fe.disk_bytenr}:${x.fe.disk_num_bytes}:${x.fe.compression}:${x.fe.ram_bytes}`;

export class DecodeAhead {
  private worker: Worker | undefined;
  private usable = true;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly queue: Pending[] = [];
  private readonly shared = new SharedArrayBuffer(SLOTS * 2 * SLOT_SIZE);
  private readonly free: number[] = [...Array(SLOTS).keys()];
  /** The slot whose decoded bytes the send holds now: given back when it claims the next extent. */
  private held: number | undefined;

  /** `codecs`: URL of the compiled codec module the worker imports (tests point it at dist/). */
  constructor(private readonly codecs = new URL('../compress/index.js', import.meta.url).href) {}

  /** Whether `x` is worth decoding ahead: a compressed regular extent whose stored and decoded bytes fit a slot. */
  static wants(x: ExtentRef): boolean {
    return x.fe.type !== BTRFS_FILE_EXTENT_INLINE && x.fe.disk_bytenr !== 0n && x.fe.compression !== BTRFS_COMPRESS_NONE
      && x.fe.ram_bytes <= BigInt(SLOT_SIZE) && x.fe.disk_num_bytes <= BigInt(SLOT_SIZE);
  }

  /** Whether another extent may be announced now. */
  get room(): boolean {
    return this.usable && this.free.length > 0;
  }

  /**
   * Announces an extent the send will reach soon: `read` puts its verified stored bytes into the buffer it
   * is given (or returns them elsewhere, then they are copied in), the worker decodes them.
   */
  async ahead(x: ExtentRef, read: (into: Uint8Array) => Promise<Uint8Array>): Promise<void> {
    if (!this.room || !DecodeAhead.wants(x)) return;
    const key = keyOf(x);
    if (this.queue.some((p) => p.key === key)) return;
    const slot = this.free.pop()!;
    const len = Number(x.fe.disk_num_bytes);
    const input = new Uint8Array(this.shared, slot * 2 * SLOT_SIZE, SLOT_SIZE);
    let got: Uint8Array;
    try {
      got = await read(input);
    } catch (e) {
      this.free.push(slot);
      throw e;
    }
    if (got.buffer !== this.shared || got.byteOffset !== input.byteOffset) input.set(got.subarray(0, len));
    const worker = this.start();
    const result = new Promise<void>((resolve, reject) => this.waiting.set(slot, { resolve, reject }));
    result.catch(() => undefined); // an unclaimed failure is not an unhandled rejection; a claim sees it
    worker.postMessage({ slot, type: x.fe.compression, len, ramBytes: Number(x.fe.ram_bytes), sectorsize: x.img.sectorsize });
    this.queue.push({ key, slot, result });
  }

  /**
   * The decoded bytes of `x` when they were announced, a view valid until the next claim (earlier
   * announcements not claimed are dropped: the send went past them); else undefined and the caller
   * decodes in line.
   */
  async decoded(x: ExtentRef): Promise<Uint8Array | undefined> {
    this.release();
    const key = keyOf(x);
    const at = this.queue.findIndex((p) => p.key === key);
    if (at < 0) return undefined;
    const skipped = this.queue.splice(0, at + 1);
    const p = skipped.pop()!;
    for (const s of skipped) void s.result.then(() => this.free.push(s.slot), () => this.free.push(s.slot));
    try {
      await p.result;
    } catch (e) {
      this.free.push(p.slot);
      if ((e as { unavailable?: boolean }).unavailable) return undefined;
      const c = e as { code?: string; message: string };
      // the codec's own error, with the extent named as in-line decoding names it
      throw new CodecError(c.code ?? 'CODEC', `${x.what}: ${c.message}`);
    }
    this.held = p.slot;
    return new Uint8Array(this.shared, p.slot * 2 * SLOT_SIZE + SLOT_SIZE, Number(x.fe.ram_bytes));
  }

  /** Stops the worker; pending results are dropped. */
  close(): void {
    void this.worker?.terminate();
    this.worker = undefined;
    this.usable = false;
    this.queue.length = 0;
  }

  private release(): void {
    if (this.held !== undefined) this.free.push(this.held);
    this.held = undefined;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER, { eval: true, workerData: { codecs: this.codecs, shared: this.shared, slotSize: SLOT_SIZE } });
    w.unref(); // never what keeps the process alive
    w.on('message', (m: { slot?: number; error?: { code?: string; message: string }; unavailable?: string; ready?: boolean }) => {
      if (m.unavailable !== undefined) return this.fail(Object.assign(new Error(m.unavailable), { unavailable: true }));
      if (m.slot === undefined) return;
      const w8 = this.waiting.get(m.slot);
      this.waiting.delete(m.slot);
      if (!w8) return;
      if (m.error) w8.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else w8.resolve();
    });
    w.on('error', (e) => this.fail(Object.assign(e, { unavailable: true })));
    this.worker = w;
    return w;
  }

  /** The worker is gone or cannot decode: whatever waits decodes in line, nothing more is announced. */
  private fail(e: Error): void {
    this.usable = false;
    for (const w8 of this.waiting.values()) w8.reject(e);
    this.waiting.clear();
  }
}

/** The decoded bytes of a compressed extent: from the decoder ahead when it has them, else decoded here. */
export async function decodeExtent(x: ExtentRef, raw: () => Promise<Uint8Array>, ahead: DecodeAhead | undefined, into?: Uint8Array): Promise<Uint8Array> {
  const got = await ahead?.decoded(x);
  if (got) return got;
  return decompressExtent(x.fe.compression, await raw(), Number(x.fe.ram_bytes), x.img.sectorsize, x.what, into);
}
