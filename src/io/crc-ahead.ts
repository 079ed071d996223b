import type { FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import * as C from '../stream/constants.js';
import type { ByteReader, CrcVerdict } from '../stream/source.js';

/**
 * A send stream file read and CRC-checked on a second thread, ahead of the parser (btrfs-progs checks
 * CRC32C with the crc32 instruction inside its single read loop; node has one thread per isolate, so
 * reading and checking 1 GiB took more than half of a dump's time on the parsing thread). The worker
 * reads the file into a shared ring in 128 KiB pieces, walks the stream's framing (stream headers,
 * 10-byte command headers), checks each whole command's CRC while its bytes are still in the cache, and
 * publishes how far the file is read and how far every command is good. The parser takes its commands
 * from the ring as views and asks crcVerdict() instead of computing the CRC itself.
 *
 * The parser stays the judge of the framing: where the worker cannot follow it (a bad magic, a command
 * longer than the limit) it stops checking and says so, and the parser computes any CRC past that point
 * itself and reports its own error where it finds one — exactly as without the worker.
 *
 * Shared state, BigInt64Array `ctl` (positions are absolute file offsets):
 */
const READ_END = 0; // bytes of the file in the ring (worker)
const GOOD_END = 1; // every command before this offset has a good CRC (worker)
const BAD_AT = 2; // offset of the first command whose CRC is wrong, -1 none (worker)
const BAD_CRC = 3; // the CRC that command's bytes give (worker)
const STOP_AT = 4; // offset from where the worker checks nothing, -1 none (worker)
const STATE = 5; // 0 running, 1 end of file, 2 read error (worker)
const SEQ = 6; // bumped at every publication; the parser sleeps on it (worker)
const CONSUMED = 7; // the ring before this offset may be refilled (parser)
const WORKER_SLEEPING = 8;
const CLOSED = 9; // the parser is done (parser)
const SLOTS = 10;

const READ_SIZE = 128 << 10;
/** Let timers and signal handlers run (progress, Ctrl-C) after this many bytes without a pause. */
const YIELD_EVERY = 16 << 20;

/** Plain JS run by the worker (eval: a .ts worker file would not load under the test runner). */
const WORKER = `(async () => {
const { workerData } = await import('node:worker_threads');
const { fd, ringBuf, ctlBuf, crcModule, maxLen, port } = workerData;
const ctl = new BigInt64Array(ctlBuf);
try {
const fs = await import('node:fs');
const { createRequire } = await import('node:module');
const native = createRequire(crcModule)(crcModule).crc32c;
const crc = (c, d) => ~native(d, ~c >>> 0) >>> 0;
const ring = new Uint8Array(ringBuf), R = ring.length;
const MAGIC = [${[...new TextEncoder().encode(C.BTRFS_SEND_STREAM_MAGIC + '\0')].join(',')}];
let readEnd = 0, frame = 0, wantHeader = true, stopped = false;
const hdr = new Uint8Array(10);
const at = (p) => ring[p % R];
const u32 = (p) => (at(p) | (at(p + 1) << 8) | (at(p + 2) << 16) | (at(p + 3) << 24)) >>> 0;
const publish = () => { Atomics.add(ctl, ${SEQ}, 1n); Atomics.notify(ctl, ${SEQ}); };
const stop = () => { stopped = true; Atomics.store(ctl, ${STOP_AT}, BigInt(frame)); };
function check() {
  while (!stopped) {
    if (wantHeader) {
      if (readEnd - frame < ${C.BTRFS_STREAM_HEADER_SIZE}) return;
      for (let i = 0; i < MAGIC.length; i++) if (at(frame + i) !== MAGIC[i]) return stop();
      const v = u32(frame + 13);
      if (v < ${C.BTRFS_SEND_STREAM_VERSION_MIN} || v > ${C.BTRFS_SEND_STREAM_VERSION_MAX}) return stop();
      frame += ${C.BTRFS_STREAM_HEADER_SIZE};
      wantHeader = false;
      continue;
    }
    if (readEnd - frame < 10) return;
    const len = u32(frame), cmd = at(frame + 4) | (at(frame + 5) << 8), want = u32(frame + 6);
    if (len > maxLen) return stop();
    const end = frame + 10 + len;
    if (readEnd < end) return;
    for (let i = 0; i < 10; i++) hdr[i] = i < 6 ? at(frame + i) : 0;
    let c = crc(0, hdr);
    for (let p = frame + 10; p < end; ) {
      const o = p % R, n = Math.min(end - p, R - o);
      c = crc(c, ring.subarray(o, o + n));
      p += n;
    }
    if (c !== want) {
      Atomics.store(ctl, ${BAD_CRC}, BigInt(c));
      Atomics.store(ctl, ${BAD_AT}, BigInt(frame));
      return stop();
    }
    frame = end;
    Atomics.store(ctl, ${GOOD_END}, BigInt(end));
    if (cmd === ${C.BTRFS_SEND_C_END}) wantHeader = true;
  }
}
for (;;) {
  if (Atomics.load(ctl, ${CLOSED}) !== 0n) break;
  const consumed = Number(Atomics.load(ctl, ${CONSUMED}));
  const space = consumed + R - readEnd;
  if (space < 4096) {
    Atomics.store(ctl, ${WORKER_SLEEPING}, 1n);
    if (Number(Atomics.load(ctl, ${CONSUMED})) === consumed && Atomics.load(ctl, ${CLOSED}) === 0n) Atomics.wait(ctl, ${CONSUMED}, BigInt(consumed));
    Atomics.store(ctl, ${WORKER_SLEEPING}, 0n);
    continue;
  }
  const o = readEnd % R;
  let got;
  try {
    got = fs.readSync(fd, ring, o, Math.min(${READ_SIZE}, R - o, space), null);
  } catch (e) {
    port.postMessage({ message: String(e && e.message), code: e && e.code });
    Atomics.store(ctl, ${STATE}, 2n);
    publish();
    break;
  }
  if (got === 0) {
    Atomics.store(ctl, ${STATE}, 1n);
    publish();
    break;
  }
  readEnd += got;
  Atomics.store(ctl, ${READ_END}, BigInt(readEnd));
  check();
  publish();
}
} catch (e) {
  // the parser sleeps on SEQ and cannot see this thread's error event: say it through the shared state
  port.postMessage({ message: 'CRC check thread failed: ' + String(e && e.message) });
  Atomics.store(ctl, ${STATE}, 2n);
  Atomics.add(ctl, ${SEQ}, 1n);
  Atomics.notify(ctl, ${SEQ});
}
})();
`;

/** The native crc32c module's path, when this process uses it (the worker loads the same). */
function nativeCrcModule(): string | undefined {
  try {
    const req = createRequire(import.meta.url);
    const path = req.resolve('@node-rs/crc32');
    return typeof (req(path) as { crc32c?: unknown }).crc32c === 'function' ? path : undefined;
  } catch {
    return undefined;
  }
}

let crcModule: string | null | undefined;

/** A reader that checks CRCs ahead, or undefined where there is no native CRC32C for the worker. */
export function openCrcAhead(fh: FileHandle, maxLen: number, onRead?: (bytes: number) => void): ByteReader | undefined {
  // BTRFS_TS_CRC_AHEAD=off: everything on the parsing thread (benchmarks compare both)
  if (process.env['BTRFS_TS_CRC_AHEAD'] === 'off') return undefined;
  if (crcModule === undefined) crcModule = nativeCrcModule() ?? null;
  if (crcModule === null) return undefined;
  try {
    return new CrcAheadReader(fh, crcModule, maxLen, onRead);
  } catch {
    return undefined; // no thread to be had (resource limits): the parser checks on its own
  }
}

export class CrcAheadReader implements ByteReader {
  private readonly ring: Buffer;
  private readonly ctl: BigInt64Array;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly closed: Promise<void>;
  position = 0;
  readonly reusing = true;
  private reported = 0;
  private horizon = YIELD_EVERY;
  private failure: { message?: string; code?: string } | undefined;

  constructor(private readonly fh: FileHandle, crcModule: string, maxLen: number, private readonly onRead?: (bytes: number) => void) {
    // a whole command (header + payload up to the limit) must fit beside a read
    const ringBuf = new SharedArrayBuffer(Math.max(8 << 20, maxLen + C.BTRFS_CMD_HEADER_SIZE + 2 * READ_SIZE));
    const ctlBuf = new SharedArrayBuffer(SLOTS * 8);
    this.ring = Buffer.from(ringBuf);
    this.ctl = new BigInt64Array(ctlBuf);
    this.ctl[BAD_AT] = -1n;
    this.ctl[STOP_AT] = -1n;
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER, {
      eval: true, workerData: { fd: fh.fd, ringBuf, ctlBuf, crcModule, maxLen, port: port2 }, transferList: [port2],
    });
    this.worker.unref();
    this.closed = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.on('error', (e) => {
      // a worker that dies leaves STATE at 0: the parser would wait for ever; say read error instead
      this.failure = { message: `CRC check thread failed: ${e.message}` };
      Atomics.store(this.ctl, STATE, 2n);
      Atomics.add(this.ctl, SEQ, 1n);
      Atomics.notify(this.ctl, SEQ);
    });
  }

  /**
   * What the worker has read, but never past `horizon`: the parser then has to call fill(), which lets
   * the event loop run (progress, signals) every YIELD_EVERY bytes although the bytes are already there.
   */
  get available(): number {
    return Math.min(Number(Atomics.load(this.ctl, READ_END)), this.horizon) - this.position;
  }

  async fill(n: number): Promise<number> {
    let have: number;
    for (;;) {
      const seq = Atomics.load(this.ctl, SEQ);
      have = Number(Atomics.load(this.ctl, READ_END)) - this.position;
      if (have >= n) break;
      const state = Atomics.load(this.ctl, STATE);
      if (state === 2n) throw this.readError();
      if (state === 1n) {
        // the last read may have landed between the two loads
        have = Number(Atomics.load(this.ctl, READ_END)) - this.position;
        break;
      }
      Atomics.wait(this.ctl, SEQ, seq, 1000);
    }
    const got = Math.min(n, have);
    const readEnd = this.position + have;
    if (readEnd > this.reported) {
      this.onRead?.(readEnd - this.reported);
      this.reported = readEnd;
    }
    if (this.position + got > this.horizon) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.horizon = this.position + got + YIELD_EVERY;
    }
    return got;
  }

  take(n: number): Uint8Array {
    const o = this.position % this.ring.length;
    const out = o + n <= this.ring.length
      ? this.ring.subarray(o, o + n)
      // a command across the ring's end: one copy (once per ring's length of stream)
      : Buffer.concat([this.ring.subarray(o), this.ring.subarray(0, o + n - this.ring.length)]);
    this.position += n;
    return out;
  }

  /** Where the worker stands on the command at [offset, end): good, its actual CRC, or not checked. */
  crcVerdict(offset: number, end: number): CrcVerdict {
    for (;;) {
      const seq = Atomics.load(this.ctl, SEQ);
      if (Number(Atomics.load(this.ctl, GOOD_END)) >= end) return 'good';
      if (Number(Atomics.load(this.ctl, BAD_AT)) === offset) return Number(Atomics.load(this.ctl, BAD_CRC));
      const stop = Number(Atomics.load(this.ctl, STOP_AT));
      if ((stop >= 0 && stop <= offset) || Atomics.load(this.ctl, STATE) !== 0n) {
        // stopped before it, or the file is read whole and it was not checked: the parser's to do
        if (Number(Atomics.load(this.ctl, GOOD_END)) >= end) return 'good';
        if (Number(Atomics.load(this.ctl, BAD_AT)) === offset) return Number(Atomics.load(this.ctl, BAD_CRC));
        return 'unchecked';
      }
      Atomics.wait(this.ctl, SEQ, seq, 1000);
    }
  }

  releaseSpent(): void {
    Atomics.store(this.ctl, CONSUMED, BigInt(this.position));
    if (Atomics.load(this.ctl, WORKER_SLEEPING) !== 0n) Atomics.notify(this.ctl, CONSUMED);
  }

  async close(): Promise<void> {
    Atomics.store(this.ctl, CLOSED, 1n);
    Atomics.notify(this.ctl, CONSUMED);
    // the worker reads from the descriptor: it must be gone before the file is closed; and an unref'd
    // worker's exit event would not keep the process alive to be delivered (node would exit, silently,
    // before the caller's next line)
    this.worker.ref();
    await this.closed;
    this.port.close();
    await this.fh.close();
  }

  private readError(): Error {
    const m = this.failure ?? (receiveMessageOnPort(this.port)?.message as { message?: string; code?: string } | undefined);
    const e = new Error(m?.message ?? 'read error') as NodeJS.ErrnoException;
    if (m?.code) e.code = m.code;
    return e;
  }
}
