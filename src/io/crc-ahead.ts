import { crc32cEngine } from '../util/crc32c.js';
import { nativeAddon } from '../util/native-addon.js';

/**
 * The CRC32C of a stream file's commands checked ahead of the parser, on a thread of the native addon
 * (native/crc-ahead.c): the parser skips its own pass over the bytes of every command the thread has
 * already found intact. That pass is bound by memory bandwidth, not by the CRC instruction: a dump of a
 * 195 MiB stream spent ~45 ms of its ~150 ms main thread on it (docs/performance.md, twelfth session),
 * and the thread does it on the other core.
 *
 * The thread counts the commands whose CRC matched from the first command header on; the parser counts its
 * own commands from the same byte and skips the check of the n-th only when the thread's count is past n.
 * It frames commands as the parser does and stops at the first thing it cannot check (a mismatch, a bad
 * length, the end of the file), so the parser meets every damaged command with its own check and error.
 * Only where the addon's CRC32C is the engine in use (it passed crc32c.ts's probes), and never for a
 * parser that needs per-sector CRCs of the data (receive): those come from its own pass.
 */
export class CrcAhead {
  private constructor(private readonly words: Int32Array) {}

  /** A thread checking the commands of regular file `fd` from byte `offset`, or undefined where there is none. */
  static start(fd: number, offset: number, maxLen: number): CrcAhead | undefined {
    if (crc32cEngine !== 'addon' || typeof nativeAddon?.crcAhead !== 'function' || process.env['BTRFS_TS_CRC_AHEAD'] === 'off') return undefined;
    try {
      const ab = nativeAddon.crcAhead(fd, offset, maxLen);
      return ab === undefined ? undefined : new CrcAhead(new Int32Array(ab, 0, 4));
    } catch {
      return undefined;
    }
  }

  /** How many commands from the first have been found intact (only grows). */
  verified(): number {
    return Atomics.load(this.words, 0);
  }

  /** Whether the thread has stopped: `verified()` will not grow any more. */
  get stopped(): boolean {
    return Atomics.load(this.words, 1) === 1;
  }

  /** Asks the thread to stop (it does after the command it is checking). */
  stop(): void {
    Atomics.store(this.words, 2, 1);
  }
}
