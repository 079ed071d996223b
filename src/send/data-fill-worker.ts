import type { Worker } from 'node:worker_threads';
import { nodeWorkerThreads } from '../util/lazy-builtins.js';

/**
 * The thread of data-fill.ts, as plain JavaScript run with `eval` (as extent-worker.ts, whose notes on
 * loading apply). It loads its modules, says so (FillThread.ready), and waits for its work: the ring,
 * the output arena and the image's path, in one message (it may be started before the send has them).
 * Then it never returns to its event loop: it sleeps on the ring's TAIL word (Atomics.wait)
 * until the send posts a job, does the jobs in order, and counts them in DONE, waking the send only when
 * it waits. Per job: read the bytes from each copy in turn straight into the output arena, until one
 * whose sectors all match the stored crc32c checksums; result FILLED, or LEFT when none did or a read failed
 * (the send then does it again in line and reports it). The first read error or mismatch is not an
 * error here: the send's own read says what it is.
 */
export const FILL_WORKER = `(async () => {
const { parentPort, workerData } = await import('node:worker_threads');
const { openSync } = await import('node:fs');
const { modules, loaded } = workerData;
let csum, algo, fd, readFullAt, shared, arena, path, L;
try {
  csum = await import(new URL('image/structs/csum.js', modules).href);
  ({ readFullAt } = await import(new URL('io/read-full.js', modules).href));
  algo = await csum.loadCsum(0);
  Atomics.store(loaded, 0, 1);
  ({ shared, arena, path, layout: L } = await new Promise((resolve) => parentPort.once('message', resolve)));
  fd = openSync(path, 'r');
} catch (e) {
  Atomics.store(loaded, 0, 1);
  parentPort.postMessage({ unavailable: String(e && e.message) });
  return;
}
const ctl = new Int32Array(shared, 0, 8);
const ints = new Int32Array(shared, L.INTS_AT, L.RING * L.INTS);
const offs = new Float64Array(shared, L.OFFS_AT, L.RING * L.MAX_COPIES);
const out = new Uint8Array(arena);
const have = new Uint8Array(L.MAX_SECTORS).fill(1);
function run(e) {
  const n = ints[e * L.INTS], len = ints[e * L.INTS + 1], at = ints[e * L.INTS + 2];
  const room = out.subarray(at, at + len);
  const sectors = len / 4096;
  const sums = new Uint8Array(shared, L.SUMS_AT + e * L.MAX_SECTORS * 4, sectors * 4);
  for (let k = 0; k < n; k++) {
    try {
      readFullAt(fd, room, offs[e * L.MAX_COPIES + k]);
    } catch {
      return L.LEFT;
    }
    if (csum.firstBadSector(algo, room, len, 4096, sums, have.subarray(0, sectors)) < 0) return L.FILLED;
  }
  return L.LEFT;
}
for (let head = 0; ;) {
  if (head === Atomics.load(ctl, L.TAIL)) {
    Atomics.store(ctl, L.SLEEPING, 1);
    if (head === Atomics.load(ctl, L.TAIL) && !Atomics.load(ctl, L.STOP)) Atomics.wait(ctl, L.TAIL, head);
    Atomics.store(ctl, L.SLEEPING, 0);
    if (Atomics.load(ctl, L.STOP)) return;
    continue;
  }
  const e = head % L.RING;
  // the send may have taken the job (it does one when it would wait): then only count it
  if (Atomics.compareExchange(ints, e * L.INTS + 3, L.POSTED, L.WORKING) === L.POSTED) Atomics.store(ints, e * L.INTS + 3, run(e));
  Atomics.store(ctl, L.DONE, ++head);
  if (Atomics.load(ctl, L.WAITING)) Atomics.notify(ctl, L.DONE);
}
})();`;

/**
 * The thread of a DataFill, which may be started before the send knows what it will read: node takes
 * 30-40 ms of CPU to start a thread, 60-80 ms once a V8 flag has been changed (the send command's
 * interrupt budget: V8 then refuses the code cache of node's built-in modules, which the thread compiles
 * again from source). Started at the first job, it was ready 100-140 ms later, with the send's thread
 * doing the jobs meanwhile; the CLI starts it as the command starts and changes the flag once it is ready.
 */
export class FillThread {
  private readonly worker: Worker;
  /** Set to 1 by the thread once its modules are loaded (or it gave up). */
  private readonly loaded = new Int32Array(new SharedArrayBuffer(4));
  private failed = false;
  private onFail: (() => void) | undefined;

  constructor(modules = new URL('../', import.meta.url).href) {
    this.worker = new (nodeWorkerThreads().Worker)(FILL_WORKER, { eval: true, workerData: { modules, loaded: this.loaded } });
    this.worker.unref(); // never what keeps the process alive
    const fail = (): void => {
      this.failed = true;
      this.onFail?.();
    };
    this.worker.on('message', fail); // it only ever says that it cannot work
    this.worker.on('error', fail);
  }

  /** Whether the thread has loaded what it runs, or failed: past its start-up, which V8 flag changes slow. */
  get ready(): boolean {
    return this.failed || Atomics.load(this.loaded, 0) === 1;
  }

  /** Gives the thread its ring, output arena and image (once); `onFail` is called if it cannot work. */
  run(work: object, onFail: () => void): void {
    this.onFail = onFail;
    if (this.failed) onFail();
    else this.worker.postMessage(work);
  }

  close(): void {
    void this.worker.terminate();
  }
}
