import { crc32cEngine } from '../util/crc32c.js';
import { nativeAddon } from '../util/native-addon.js';

/**
 * The data-fill thread as a thread of the native addon (native/data-fill.c): the same jobs from the same
 * ring as the JavaScript worker (data-fill-worker.ts), started in well under a millisecond instead of the
 * worker's 30-80 ms of node bootstrap, and without JavaScript per job. The ring's words are woken through
 * futexes (V8's Atomics.wait keeps its own waiters, which a C thread cannot wake): `wake` and `wait` are
 * addon calls, `wait` a blocking one (the send waits only when the thread is on the last job it needs).
 * Only where the addon's CRC32C is the engine in use (it passed crc32c.ts's probes), as for CrcAhead.
 */
export class NativeFill {
  private stopped = false;

  private constructor(private readonly handle: object) {}

  /** Whether this process has the native thread (BTRFS_TS_FILL=worker: the JavaScript worker, for tests and comparisons). */
  static get available(): boolean {
    return crc32cEngine === 'addon' && typeof nativeAddon?.fillStart === 'function' && process.env['BTRFS_TS_FILL'] !== 'worker';
  }

  /** The thread working on the ring in `shared` for the output `arena` and image `path`; undefined where it cannot start. */
  static start(shared: SharedArrayBuffer, arena: SharedArrayBuffer, path: string, layout: number[]): NativeFill | undefined {
    if (!NativeFill.available) return undefined;
    try {
      const h = nativeAddon!.fillStart!(new Uint8Array(shared), new Uint8Array(arena), path, Int32Array.from(layout));
      return h === undefined ? undefined : new NativeFill(h);
    } catch {
      return undefined;
    }
  }

  wake(): void {
    nativeAddon!.fillWake!(this.handle);
  }

  /** Blocks while the ring's DONE word is `done`, at most `ms` milliseconds. */
  wait(done: number, ms: number): void {
    nativeAddon!.fillWait!(this.handle, done, ms);
  }

  /** Stops the thread after the job in hand (it is joined: nothing is read into the arena afterwards). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    nativeAddon!.fillStop!(this.handle);
  }
}
