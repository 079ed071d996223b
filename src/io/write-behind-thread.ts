import type { MessagePort, Worker } from 'node:worker_threads';
import { alignedShared } from '../util/aligned.js';
import { nodeWorkerThreads } from '../util/lazy-builtins.js';
import { NATIVE_ADDON_PATH } from '../util/native-addon.js';
import { OP_WRITE, REC, SLOTS, WORKER } from './write-behind-worker.js';

/**
 * The caller's end of the write-behind thread: starting it over the shared buffers, the waits and wakes
 * between the two sides, the lent buffers handed over, and the thread's failure. Apart from the queue
 * (write-behind.ts), which decides what goes into the ring and when, and from the thread's own script
 * (write-behind-worker.ts): this is the protocol both of them keep.
 *
 * Shared state: ctrl[0] = records queued (producer), ctrl[1] = records done (worker), ctrl[2] = failed,
 * ctrl[5] = the worker has started, ctrl[3] / ctrl[4] = the worker / the producer is about to sleep: the
 * other side only wakes (a futex call) a thread that may be sleeping. Sequentially consistent atomics make
 * that safe: the sleeper sets its flag before Atomics.wait re-checks the counter, the waker stores the
 * counter before reading the flag. Each record is five numbers in `recs` (write-behind-worker.ts has the
 * layout). Counters wrap as int32.
 */

/** How long a wait for the thread gives it to start before giving up (it takes milliseconds). */
const START_TIMEOUT_MS = 30_000;

export interface WriteFailure {
  op: number;
  len: number;
  off: number;
  message: string;
  code?: string;
}

export class WriterThread {
  readonly ctrl: Int32Array;
  readonly recs: Float64Array;
  /** The ring, page-aligned, so that a direct write's memory is aligned wherever a record starts on a block. */
  readonly data: Uint8Array;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private waitedForStart = 0;
  /** Lent buffers the thread has been given, by their number there. */
  private readonly lentNumbers = new Map<SharedArrayBuffer, number>();
  private failure: WriteFailure | undefined;

  constructor(fd: number, capacity: number, writebackBytes: number, directFd: number) {
    const ctrlBuf = new SharedArrayBuffer(32);
    const recBuf = new SharedArrayBuffer(SLOTS * REC * 8);
    const dataBuf = alignedShared(capacity);
    this.ctrl = new Int32Array(ctrlBuf);
    this.recs = new Float64Array(recBuf);
    this.data = new Uint8Array(dataBuf);
    const { port1, port2 } = new (nodeWorkerThreads().MessageChannel)();
    this.port = port1;
    this.worker = new (nodeWorkerThreads().Worker)(WORKER, { eval: true, workerData: { fd, directFd, ctrlBuf, recBuf, dataBuf, port: port2, writebackBytes, addonPath: NATIVE_ADDON_PATH }, transferList: [port2],
      // it allocates next to nothing: a small heap keeps its memory small
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8 } });
    // an idle writer thread must not keep the process alive; close() waits for it where it matters
    this.worker.unref();
    // a thread that fails to start is noticed by the waits (ctrl[5] stays 0); its error event must not
    // crash the process meanwhile
    this.worker.on('error', () => undefined);
    this.port.unref();
  }

  /** The number the thread knows `buf` by, sending it first if it has not been lent before. */
  lentNumber(buf: SharedArrayBuffer): number {
    let n = this.lentNumbers.get(buf);
    if (n === undefined) {
      n = this.lentNumbers.size;
      this.lentNumbers.set(buf, n);
      // sent before any record that names it: the thread takes it from the port when it meets the number
      this.port.postMessage({ n, buf });
    }
    return n;
  }

  /** The first failure of the thread, once it is known (sticky). */
  failed(): WriteFailure | undefined {
    if (this.failure || Atomics.load(this.ctrl, 2) === 0) return this.failure;
    const m = nodeWorkerThreads().receiveMessageOnPort(this.port);
    this.failure = (m?.message as WriteFailure | undefined) ?? { op: 0, len: 0, off: 0, message: 'write-behind thread failed' };
    return this.failure;
  }

  /** The thread never started (its failure is set): nothing queued will be done. */
  dead(): boolean {
    return this.failure !== undefined && Atomics.load(this.ctrl, 5) === 0;
  }

  /** Wakes the thread if it may be sleeping. */
  wake(): void {
    if (Atomics.load(this.ctrl, 3) !== 0) Atomics.notify(this.ctrl, 0);
  }

  /** Waits (up to a second) for the thread to finish another record after `done`; the caller has woken it. */
  sleep(done: number): void {
    Atomics.store(this.ctrl, 4, 1);
    if (Atomics.wait(this.ctrl, 1, done, 1000) === 'timed-out' && Atomics.load(this.ctrl, 5) === 0) {
      // a thread that never started would leave this wait forever
      this.waitedForStart += 1000;
      if (this.waitedForStart >= START_TIMEOUT_MS) this.failure ??= { op: OP_WRITE, len: 0, off: 0, message: 'the write-behind thread did not start' };
    }
    Atomics.store(this.ctrl, 4, 0);
  }

  /** Stops the thread (the caller has drained it), its failure read first. */
  stop(): void {
    this.failed(); // read before the port closes
    void this.worker.terminate();
    this.port.close();
  }
}
