import * as fs from 'node:fs';
import { ImageError } from '../errors.js';
import { ByteRanges } from './byte-ranges.js';
import { HEADER, MAGIC, REC, ZEROS, extentOf, generationOf, removeJournal, restore, undoPath } from './undo-restore.js';

/**
 * A rollback journal for an image file, so a failed receive leaves the image byte for byte as it was —
 * not only its filesystem state (the superblock is written last, so that is kept anyway) but also the
 * free space that data and new tree blocks were written into before the failure.
 *
 * Before a range of the image is first overwritten after a commit, its old bytes are appended to
 * IMAGE.btrfs-ts.undo (a range that read as zeros is recorded without its bytes: a fresh sparse image
 * costs nothing). On failure the saved bytes are written back and the file is cut to its size at the last
 * commit. A commit empties the journal. A process killed in between leaves the journal behind; the next
 * writer rolls it back when the superblock still has the journal's generation (no commit happened), and
 * drops it otherwise. Writes reach the journal before the image (both through the page cache), which is
 * what a killed process needs; a power cut is only as safe as the superblock ordering (docs/receive.md).
 *
 * The journal's layout and putting an image back from it (rollback here, recovery after a kill): undo-restore.ts.
 */
const BLOCK = 4096;
/** How far past a write into never-written space a fresh image's journal records zeros at once. */
const ZERO_AHEAD = 8 << 20;

export { undoPath };

export class UndoLog {
  /** Ranges saved since the last commit. */
  private saved = new ByteRanges();
  /** For an image made by this process: every range written since it was made (the rest are holes). */
  private readonly touched: ByteRanges | undefined;

  private constructor(
    private readonly imageFd: number,
    private readonly fd: number,
    private base: { generation: bigint; size: number },
    private readonly image: string,
    fresh: boolean,
  ) {
    if (fresh) this.touched = new ByteRanges();
  }

  /**
   * Starts journaling writes to the image open on `imageFd` (its current state is the base). `fresh`: the
   * file was just made and is all holes — what was never written need not be read to know it is zeros.
   */
  static begin(image: string, imageFd: number, fresh = false): UndoLog {
    let fd: number;
    try {
      // O_APPEND: plain write(2) calls, so the image's own pwrite64 calls are the only ones (fault tests
      // place a kill at the n-th of them)
      fd = fs.openSync(undoPath(image), 'a+');
      fs.ftruncateSync(fd, 0);
    } catch (e) {
      throw new ImageError('IMAGE_WRITE', `cannot create the rollback journal ${undoPath(image)}: ${(e as Error).message}`, { cause: e });
    }
    const log = new UndoLog(imageFd, fd, { generation: generationOf(imageFd), size: extentOf(imageFd) }, image, fresh);
    try {
      log.writeHeader();
    } catch (e) {
      // (a full filesystem) no journal is left that nothing will use
      log.discard();
      throw e;
    }
    return log;
  }

  /** Saves the bytes of [offset, offset + len) not saved since the last commit, before they are overwritten. */
  save(offset: number, len: number): void {
    // ranges past the size at the commit need nothing: the file is cut back to it
    const stop = Math.min(offset + len, this.base.size);
    // most writes of a fresh image land in zeros recorded ahead (zerosAhead): nothing to do but note them
    if (offset < stop && !this.saved.covers(offset, stop)) {
      for (const [s, e] of this.saved.gaps(offset, stop)) {
        if (!this.touched) this.record(s, e);
        else {
          // never written since the image was made: a hole, known to be zeros without reading it
          let at = s;
          for (const [gs, ge] of this.touched.gaps(s, e)) {
            if (gs > at) this.record(at, gs);
            this.zeroRecord(gs, ge);
            at = ge;
          }
          if (at < e) this.record(at, e);
        }
      }
      this.saved.add(offset, stop);
      if (this.touched) this.zerosAhead(stop);
    }
    this.touched?.add(offset, offset + len);
  }

  /**
   * Writes of a fresh image move forward through never-written space (data extents, new tree blocks):
   * the untouched, unsaved bytes right after `from` are recorded as zeros for up to ZERO_AHEAD at once, so
   * the next writes there find them saved — a journal write per 8 MiB instead of one per write. The
   * record only says what is true (never written since the image was made: a hole), and stops at the
   * first byte that was written or saved (a later zero record must never cover saved old bytes).
   */
  private zerosAhead(from: number): void {
    let end = Math.min(this.base.size, from + ZERO_AHEAD);
    for (const [s, e] of this.saved.gaps(from, end)) {
      if (s > from) return;
      end = e;
      break;
    }
    for (const [s, e] of this.touched!.gaps(from, end)) {
      if (s > from) return;
      end = e;
      break;
    }
    if (end <= from) return;
    this.zeroRecord(from, end);
    this.saved.add(from, end);
  }

  /** The image reached a new commit: nothing before it is to be undone any more. */
  committed(): void {
    this.base = { generation: generationOf(this.imageFd), size: extentOf(this.imageFd) };
    this.saved = new ByteRanges();
    fs.ftruncateSync(this.fd, 0);
    this.writeHeader();
  }

  /** Puts back every saved range and the size at the last commit; the journal is gone afterwards. */
  rollback(): void {
    restore(this.imageFd, this.fd, this.image);
    this.discard();
  }

  /** Closes and removes the journal (after a successful receive, or after rollback). */
  discard(): void {
    fs.closeSync(this.fd);
    removeJournal(undoPath(this.image));
  }

  /** Journals the old bytes of [start, end), zero and non-zero 4 KiB runs apart (zeros go back as holes). */
  private record(start: number, end: number): void {
    for (let at = start; at < end;) {
      const n = Math.min(1 << 20, end - at);
      const old = Buffer.alloc(n);
      for (let got = 0; got < n;) {
        const r = fs.readSync(this.imageFd, old, got, n - got, at + got);
        if (r === 0) break; // past the end: zeros
        got += r;
      }
      for (let i = 0; i < n;) {
        const zero = isZero(old.subarray(i, Math.min(n, i + BLOCK)));
        let j = i + BLOCK;
        while (j < n && isZero(old.subarray(j, Math.min(n, j + BLOCK))) === zero) j += BLOCK;
        j = Math.min(j, n);
        if (zero) this.zeroRecord(at + i, at + j);
        else this.append(Buffer.concat([recordHead(at + i, j - i, false), old.subarray(i, j)]));
        i = j;
      }
      at += n;
    }
  }

  private zeroRecord(start: number, end: number): void {
    // one record can say 4 GiB - 1: a bigger zero range takes several
    for (let at = start; at < end; at += 0x80000000) this.append(recordHead(at, Math.min(0x80000000, end - at), true));
  }

  private append(b: Buffer): void {
    try {
      for (let done = 0; done < b.length;) done += fs.writeSync(this.fd, b, done, b.length - done);
    } catch (e) {
      // nothing of the image was overwritten yet: failing here still leaves it restorable
      throw new ImageError('IMAGE_WRITE', `cannot save the image's old bytes to its rollback journal ${undoPath(this.image)}: ${(e as Error).message}`, { cause: e });
    }
  }

  private writeHeader(): void {
    const h = Buffer.alloc(HEADER);
    MAGIC.copy(h, 0);
    h.writeBigUInt64LE(this.base.generation, 8);
    h.writeBigUInt64LE(BigInt(this.base.size), 16);
    this.append(h);
  }
}

function recordHead(offset: number, len: number, zero: boolean): Buffer {
  const head = Buffer.alloc(REC);
  head.writeBigUInt64LE(BigInt(offset), 0);
  head.writeUInt32LE(len, 8);
  head[12] = zero ? 1 : 0;
  return head;
}

function isZero(b: Buffer): boolean {
  // compare against a shared zero page, 64 KiB at a time (memcmp speed)
  for (let i = 0; i < b.length; i += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - i);
    if (!b.subarray(i, i + n).equals(ZEROS.subarray(0, n))) return false;
  }
  return true;
}
