import { crc32cEngine } from '../util/crc32c.js';
import { nativeAddon } from '../util/native-addon.js';

/** native/crc-ahead.c's shared layout: 8 words, NREC records of 4 words, NREC slots of SLOT sector CRCs. */
const NREC = 512;
const SLOT = 64;
const W_COUNT = 0;
const W_STOPPED = 1;
const W_STOP = 2;
const W_MADE = 3;
const W_TAKEN = 4;
const REC_AT = 32;
const CRCS_AT = REC_AT + NREC * 16;

/**
 * The command CRCs of a stream file checked ahead of the parser, on a thread of the native addon
 * (native/crc-ahead.c): the parser skips its own pass over the bytes of every command the thread has
 * already found intact. That pass is bound by memory bandwidth, not by the CRC instruction: a dump of a
 * 195 MiB stream spent ~45 ms of its ~150 ms main thread on it, a compressed receive ~90 ms of ~1 s
 * (docs/performance.md, twelfth session), and the thread does it on the other core.
 *
 * The thread counts the commands whose CRC matched from the first command header on; the parser counts its
 * own commands from the same byte and skips the check of the n-th only when the thread's count is past n.
 * It frames commands as the parser does and stops at the first thing it cannot check (a mismatch, a bad
 * length, the end of the file), so the parser meets every damaged command with its own check and error.
 * For a receive (`sectors`), the thread also leaves the raw CRC of each 4 KiB sector of WRITE and
 * ENCODED_WRITE data, which the receive makes the extents' checksums of (sectorsOf). Only where the addon's
 * CRC32C is the engine in use (it passed crc32c.ts's probes).
 */
export class CrcAhead {
  private readonly words: Int32Array;
  private readonly rec: Int32Array;
  private readonly crcs: Uint32Array;
  /** Records taken (or passed over) so far: the thread may reuse their slots. */
  private taken = 0;

  private constructor(ab: ArrayBuffer) {
    this.words = new Int32Array(ab, 0, 8);
    this.rec = new Int32Array(ab, REC_AT, NREC * 4);
    this.crcs = new Uint32Array(ab, CRCS_AT, NREC * SLOT);
  }

  /**
   * A thread checking the commands of regular file `fd` from byte `offset` (protocol `version` there), making
   * sector CRCs if `sectors`; undefined where there is none.
   */
  static start(fd: number, offset: number, maxLen: number, version: number, sectors: boolean): CrcAhead | undefined {
    if (crc32cEngine !== 'addon' || typeof nativeAddon?.crcAhead !== 'function' || process.env['BTRFS_TS_CRC_AHEAD'] === 'off') return undefined;
    try {
      const ab = nativeAddon.crcAhead(fd, offset, maxLen, version, sectors);
      return ab === undefined ? undefined : new CrcAhead(ab);
    } catch {
      return undefined;
    }
  }

  /** How many commands from the first have been found intact (only grows). */
  verified(): number {
    return Atomics.load(this.words, W_COUNT);
  }

  /** Whether the thread has stopped: `verified()` will not grow any more. */
  get stopped(): boolean {
    return Atomics.load(this.words, W_STOPPED) === 1;
  }

  /**
   * The raw CRC32C of each whole 4 KiB sector of command `k`'s DATA (k counted from the first command, one
   * the thread found intact), if the thread made them for DATA at `dataOffset` of its payload, `dataLen` bytes
   * long; undefined otherwise (the caller computes them). Records of commands before `k` are passed over.
   */
  sectorsOf(k: number, dataOffset: number, dataLen: number): Uint32Array | undefined {
    const rec = this.rec;
    for (;;) {
      if (this.taken === Atomics.load(this.words, W_MADE)) return undefined;
      const r = (this.taken % NREC) * 4;
      const rk = rec[r]!;
      if (rk > k) return undefined;
      let out: Uint32Array | undefined;
      if (rk === k && rec[r + 1] === dataOffset && rec[r + 2] === dataLen) {
        const at = (this.taken % NREC) * SLOT;
        out = this.crcs.slice(at, at + rec[r + 3]!);
      }
      // after the copy: the thread may fill the slot again
      Atomics.store(this.words, W_TAKEN, ++this.taken);
      if (rk === k) return out;
    }
  }

  /** Asks the thread to stop (it does after the command it is checking). */
  stop(): void {
    Atomics.store(this.words, W_STOP, 1);
  }
}
