import { fstatSync } from 'node:fs';
import { BtrfsTsError } from '../errors.js';
import type { ByteReader } from '../stream/source.js';
import { nativeAddon } from '../util/native-addon.js';
import { CrcAhead } from './crc-ahead.js';
import { InputFile, registerMapping } from './file-range.js';
import { ReadProgress, YIELD_EVERY } from './read-progress.js';

/**
 * Bytes mapped at a time (by default). A command is a view of one mapping, so the next window starts at
 * the page of the first byte not yet taken and a command never straddles two; 1 GiB keeps a typed array's
 * length far from any limit and the remappings of a 10 GB stream to ten.
 */
const WINDOW = 1 << 30;
/** Pages behind the parser are given back once this many bytes have been passed since the last time (mapped pages count in RSS). */
const DROP_EVERY = 8 << 20;
const PAGE = 4096;

/** Whether regular files can be read through mappings here (the addon is built and loaded, BTRFS_TS_MMAP is not off). */
export function canMapFiles(): boolean {
  return typeof nativeAddon?.mapFile === 'function' && typeof nativeAddon.dropPages === 'function' && process.env['BTRFS_TS_MMAP'] !== 'off';
}

/**
 * A regular file read through private mappings of it (the addon's mapFile) instead of read(2) into a
 * buffer: take() hands out views of the page cache's own pages, so the bytes are never copied (read(2) of
 * the stream was a fifth of a dump's time; docs/performance.md, tenth session). The mapping is private:
 * a consumer writing into a view changes its copy of the page, never the file.
 *
 * As the window readers do, bytes become available in steps of YIELD_EVERY with a turn of the event loop
 * between, and views stay valid until releaseSpent(); then the pages behind are dropped (MADV_DONTNEED:
 * memory stays bounded on a file of any size; a page touched again faults in from the file). Past the
 * size the file had when it was last looked at, fstat is asked again, so a file still growing is read on.
 * A mapping goes when the collector finds no view of it. A file that cannot be mapped is read with read(2)
 * (open() answers undefined). Not for a file that may shrink while it is read: a page past its new end
 * would fault (SIGBUS), where read(2) ends early.
 */
export class MappedWindowReader implements ByteReader {
  private buf = new Uint8Array(0);
  /** File offset of buf[0]. */
  private base = 0;
  /** Index in buf of the next byte take() returns, and the end of what is made available so far. */
  private start = 0;
  private limit = 0;
  /** File size when last looked at. */
  private size: number;
  private droppedTo = 0;
  private eof = false;
  /** What the mappings are registered as (file-range.ts): their views' bytes can be copied from the file. */
  private readonly file: InputFile;
  private readonly progress: ReadProgress;
  private ahead: CrcAhead | undefined;
  position = 0;
  readonly reusing = true;

  private constructor(
    private readonly fd: number,
    onRead: ((bytes: number) => void) | undefined,
    private readonly closeFd: (() => Promise<void>) | undefined,
    private readonly window: number,
    size: number,
  ) {
    this.size = size;
    this.progress = new ReadProgress(onRead);
    this.file = new InputFile(fd);
  }

  /**
   * A reader of the regular file `fd` from its start, or undefined when it cannot be mapped (then read it
   * with read(2)). `window`: bytes mapped at a time (tests make it small).
   */
  static open(fd: number, onRead?: (bytes: number) => void, closeFd?: () => Promise<void>, window = WINDOW): MappedWindowReader | undefined {
    if (!canMapFiles()) return undefined;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return undefined; // a pipe or device has no size to map, or cannot be mapped
      const r = new MappedWindowReader(fd, onRead, closeFd, window, st.size);
      r.remap(0);
      return r;
    } catch {
      return undefined;
    }
  }

  get available(): number {
    return this.limit - this.start;
  }

  async fill(n: number): Promise<number> {
    while (this.limit - this.start < n && !this.eof) {
      if (this.limit === this.buf.length && !this.remap(n)) {
        this.eof = true;
        break;
      }
      const step = Math.min(this.buf.length - this.limit, Math.max(YIELD_EVERY, n - (this.limit - this.start)));
      this.limit += step;
      const pause = this.progress.advance(step);
      if (pause) await pause;
    }
    return Math.min(n, this.limit - this.start);
  }

  take(n: number): Uint8Array {
    if (n > this.limit - this.start) throw new RangeError(`take(${n}) with only ${this.limit - this.start} buffered`);
    const out = this.buf.subarray(this.start, this.start + n);
    this.start += n;
    this.position += n;
    return out;
  }

  releaseSpent(): void {
    if (this.start - this.droppedTo >= DROP_EVERY) {
      nativeAddon!.dropPages!(this.buf.subarray(this.droppedTo, this.start));
      this.droppedTo = this.start - (this.start % PAGE);
    }
  }

  crcAhead(maxLen: number): CrcAhead | undefined {
    this.ahead?.stop();
    // take() hands out the file's bytes from its start: a stream position is a file offset
    this.ahead = CrcAhead.start(this.fd, this.position, maxLen);
    return this.ahead;
  }

  async close(): Promise<void> {
    this.eof = true;
    this.ahead?.stop();
    await this.closeFd?.();
  }

  /**
   * Maps the next window, from the page holding the first byte not taken (whatever is left of the current
   * one, and at least `n` bytes beyond it if the file has them). False at the end of the file.
   */
  private remap(n: number): boolean {
    const from = this.position - (this.position % PAGE);
    if (this.base + this.buf.length >= this.size) this.size = fstatSync(this.fd).size;
    if (this.base + this.buf.length >= this.size) return false;
    const len = Math.min(this.size - from, Math.max(this.window, this.position - from + n));
    let ab: ArrayBuffer;
    try {
      ab = nativeAddon!.mapFile!(this.fd, from, len);
    } catch (e) {
      // the first window's failure is open()'s (read(2) instead); a later one ends the input with a reason
      throw new BtrfsTsError('INPUT_READ', `cannot map ${len} bytes of the input at byte ${from}: ${(e as Error).message}`, { offset: from, cause: e });
    }
    registerMapping(ab, this.file, from);
    const had = this.limit - this.start;
    this.buf = new Uint8Array(ab);
    this.base = from;
    this.start = this.position - from;
    this.limit = this.start + had;
    this.droppedTo = this.start - (this.start % PAGE);
    return true;
  }
}
