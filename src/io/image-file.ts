import * as fs from 'node:fs';
import type { BlockDevice } from '../image/device.js';
import { ImageError } from '../errors.js';
import type { FileRange, InputFile } from './file-range.js';
import { majorMinor } from './dev-number.js';
import { readFullAt } from './read-full.js';
import { UndoLog } from './undo-log.js';
import { WriteBehind } from './write-behind.js';
import { OP_EXTEND, OP_FSYNC } from './write-behind-worker.js';

/**
 * Bytes written in place before a write-behind thread asked for is started. Its start costs a second V8
 * isolate loading node's internals (~50 ms of CPU, more under load): more than writing the megabyte or
 * two of a small incremental takes, which then also needs no hand-over at its fsync.
 */
const BEHIND_AFTER = 8 << 20;

/**
 * BlockDevice on a regular file (or a block device node) with positional I/O. Sparse by nature: growing
 * only truncates upward, so unwritten ranges of a large image cost no disk space.
 */
export class FileDevice implements BlockDevice {
  private fd: number;
  private bytes: bigint;
  private readonly path: string;
  private behind: WriteBehind | undefined;
  /** The image opened with O_DIRECT for the write-behind thread's large writes (-1: none). */
  private directFd = -1;
  /** setWriteBehind(true) was called: the thread starts once `inPlace` bytes have gone past `behindAfter`. */
  private wantBehind = false;
  private behindAfter = BEHIND_AFTER;
  private inPlace = 0;
  private undo: UndoLog | undefined;
  /** Per buffer written from without a copy (lent), the write-behind record to wait for before it may change. */
  private readonly lentUntil = new Map<SharedArrayBuffer, number>();
  /**
   * Input files written from (write's `from`) and this device's own descriptor of each (-1: cannot be
   * opened): a copy queued on the thread must not read whatever file takes the input's descriptor number
   * once the input is closed. Closed when the thread stops.
   */
  private readonly sources = new Map<InputFile, number>();

  private constructor(path: string, fd: number, size: bigint) {
    this.path = path;
    this.fd = fd;
    this.bytes = size;
  }

  /** Open an existing image read-write; `size`: use only its first bytes (mkfs -b on a block device). */
  static open(path: string, opts: { readonly?: boolean; size?: bigint } = {}): FileDevice {
    let fd: number;
    try {
      fd = fs.openSync(path, opts.readonly ? 'r' : 'r+');
    } catch (err) {
      throw new ImageError('IMAGE_OPEN', `cannot open image ${path}: ${(err as Error).message}`, { cause: err });
    }
    const st = fs.fstatSync(fd, { bigint: true });
    return new FileDevice(path, fd, opts.size ?? (st.isBlockDevice() ? blockDeviceSize(fd, st.rdev) : st.size));
  }

  /** The size of the block device at `path` (fstat says 0 for one). */
  static blockDeviceSize(path: string): bigint {
    const fd = fs.openSync(path, 'r');
    try {
      return blockDeviceSize(fd, fs.fstatSync(fd, { bigint: true }).rdev);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Create (or truncate) an image file of `size` bytes. */
  static create(path: string, size: bigint): FileDevice {
    let fd: number;
    try {
      fd = fs.openSync(path, 'w+');
      fs.ftruncateSync(fd, Number(size));
    } catch (err) {
      throw new ImageError('IMAGE_CREATE', `cannot create image ${path}: ${(err as Error).message}`, { cause: err });
    }
    return new FileDevice(path, fd, size);
  }

  size(): bigint {
    return this.bytes;
  }

  read(offset: bigint, len: number): Uint8Array {
    if (this.behind) {
      // only queued writes to these bytes must land first
      if (this.behind.overlaps(Number(offset), len)) this.behind.drain();
      this.throwIfFailed();
    }
    const out = new Uint8Array(len);
    readFullAt(this.fd, out, Number(offset)); // past EOF reads as zeros
    return out;
  }

  write(offset: bigint, bytes: Uint8Array, from?: FileRange): void {
    const end = offset + BigInt(bytes.length);
    // the old bytes reach the journal before anything queued can overwrite them
    this.undo?.save(Number(offset), bytes.length);
    if (this.wantBehind && !this.behind && (this.inPlace += bytes.length) > this.behindAfter && this.fd >= 0) {
      // every write before this one is complete: the thread starts with nothing to catch up on
      this.directFd = openDirect(this.path);
      this.behind = new WriteBehind(this.fd, undefined, undefined, this.directFd);
    }
    if (this.behind) {
      this.throwIfFailed();
      const seq = bytes.buffer instanceof SharedArrayBuffer ? this.behind.lend(Number(offset), bytes) : -1;
      if (seq !== -1) {
        this.lentUntil.set(bytes.buffer as SharedArrayBuffer, seq);
        if (end > this.bytes) this.bytes = end;
        return;
      }
      // bytes that are in a file too are copied from there on the thread (copy_file_range), not into the ring
      const src = from === undefined ? -1 : this.sourceFd(from.file);
      if (src >= 0 ? this.behind.copyFrom(Number(offset), src, from!.offset, bytes.length) : this.behind.write(Number(offset), bytes)) {
        if (end > this.bytes) this.bytes = end;
        return;
      }
      // larger than the ring: written here, after everything queued before it
      this.behind.drain();
      this.throwIfFailed();
    }
    let done = 0;
    while (done < bytes.length) {
      try {
        done += fs.writeSync(this.fd, bytes, done, bytes.length - done, Number(offset) + done);
      } catch (err) {
        throw this.writeError(bytes.length, offset, (err as Error).message, err);
      }
    }
    if (end > this.bytes) this.bytes = end;
  }

  /**
   * Whether the bytes of `buffer` that write() was given are written (lent: see BlockDevice.settle); with
   * `wait`, waits until they are.
   */
  settle(buffer: SharedArrayBuffer, wait = true): boolean {
    const seq = this.lentUntil.get(buffer);
    if (seq === undefined) return true;
    if (this.behind && !wait && !this.behind.isDone(seq)) return false;
    this.behind?.doneThrough(seq);
    this.lentUntil.delete(buffer);
    return true;
  }

  flush(): void {
    if (this.behind) {
      this.behind.flush();
      this.throwIfFailed();
      return;
    }
    fs.fsyncSync(this.fd);
  }

  /**
   * Writes go to a second thread that performs them in order while the caller goes on (the receive's
   * parsing and checksumming overlap the image writes); read() and flush() wait for it. Off: waits for
   * every queued write and reports a failure among them. The thread starts with the first write past
   * `startAfter` bytes (BEHIND_AFTER); writes before it are made in place.
   */
  setWriteBehind(on: boolean, startAfter = BEHIND_AFTER): void {
    this.wantBehind = on;
    this.behindAfter = startAfter;
    this.inPlace = 0;
    if (!on && this.behind) {
      this.behind.stop();
      try {
        this.throwIfFailed();
      } finally {
        this.dropBehind();
      }
    }
  }

  /** A write-behind thread is running (it was asked for and enough was written). */
  get writingBehind(): boolean {
    return this.behind !== undefined;
  }

  /** After the thread's stop: forgets it and closes its direct descriptor and those of the files it copied from. */
  private dropBehind(): void {
    // stopped: it wrote everything it was lent
    this.behind = undefined;
    this.lentUntil.clear();
    if (this.directFd >= 0) fs.closeSync(this.directFd);
    this.directFd = -1;
    for (const fd of this.sources.values()) if (fd >= 0) fs.closeSync(fd);
    this.sources.clear();
  }

  /** This device's descriptor of `file` (the same file opened again through /proc), or -1. */
  private sourceFd(file: InputFile): number {
    let fd = this.sources.get(file);
    if (fd === undefined) {
      try {
        fd = fs.openSync(`/proc/self/fd/${file.fd}`, 'r');
      } catch {
        fd = -1; // no /proc: written from memory as any other bytes
      }
      this.sources.set(file, fd);
    }
    return fd;
  }

  /** The first failure of a write-behind thread, as the synchronous call would have thrown it. */
  private throwIfFailed(): void {
    const f = this.behind?.failed();
    if (!f) return;
    if (f.op === OP_FSYNC) throw new ImageError('IMAGE_FLUSH', `cannot make the image durable (fsync): ${f.message}`);
    if (f.op === OP_EXTEND) throw new ImageError('IMAGE_GROW', `cannot grow ${this.path} to ${f.off} bytes: ${f.message}`);
    throw this.writeError(f.len, BigInt(f.off), f.message);
  }

  private writeError(len: number, offset: bigint, message: string, cause?: unknown): ImageError {
    // the image position goes into the message: the error's offset field means a stream offset to the CLI
    return new ImageError('IMAGE_WRITE', `write of ${len} bytes at image offset ${offset} of ${this.path} failed: ${message}`, cause === undefined ? {} : { cause });
  }

  grow(newSize: bigint): void {
    if (newSize <= this.bytes) return;
    // with writes queued, the thread extends the file after them (reads past the end meanwhile give zeros, as a hole does)
    if (this.behind) {
      this.throwIfFailed();
      if (this.behind.extend(Number(newSize))) {
        this.bytes = newSize;
        return;
      }
      this.behind.drain();
      this.throwIfFailed();
    }
    try {
      fs.ftruncateSync(this.fd, Number(newSize));
    } catch (err) {
      throw new ImageError('IMAGE_GROW', `cannot grow ${this.path} to ${newSize} bytes: ${(err as Error).message}`, { cause: err });
    }
    this.bytes = newSize;
  }

  /**
   * Journals every overwrite from now on (undo-log.ts), so that `rollback` can put the image back byte for
   * byte as it was at the last `committed()`. `fresh`: the file was just created (all holes).
   */
  startUndo(opts: { fresh?: boolean } = {}): void {
    this.undo ??= UndoLog.begin(this.path, this.fd, opts.fresh ?? false);
  }

  /** A commit reached the disk: the journal starts again from here. */
  committed(): void {
    this.undo?.committed();
  }

  /** Puts the image back as it was at the last commit (queued writes are finished first). */
  rollback(): void {
    this.behind?.stop();
    this.dropBehind();
    this.undo?.rollback();
    this.undo = undefined;
    const st = fs.fstatSync(this.fd, { bigint: true });
    this.bytes = st.size;
  }

  /** Waits for writes still queued (a failure among them was reported already or no longer matters). */
  close(): void {
    this.behind?.stop();
    this.dropBehind();
    // closing without a rollback keeps what was written: the journal is no longer needed
    this.undo?.discard();
    this.undo = undefined;
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * `path` opened for writing with O_DIRECT, or -1 where that is not possible (no O_DIRECT on this
 * platform, a file system that refuses it): the write-behind thread then writes everything through the
 * page cache. Opened by path, so it names the same file as the image's descriptor (both are held open).
 */
export function openDirect(path: string): number {
  const direct = fs.constants.O_DIRECT;
  if (direct === undefined) return -1;
  try {
    return fs.openSync(path, fs.constants.O_WRONLY | direct);
  } catch {
    return -1;
  }
}

/**
 * A block device's size: fstat says 0 for it (mkfs and receive on /dev/sdX1 or a loop device took it for a
 * device of 0 bytes). Linux gives it in 512-byte sectors under /sys/dev/block/MAJOR:MINOR; elsewhere, or
 * without sysfs, the end is found by reading one byte at a time by halves (a read past it returns 0).
 */
function blockDeviceSize(fd: number, rdev: bigint): bigint {
  try {
    return BigInt(fs.readFileSync(`/sys/dev/block/${majorMinor(rdev)}/size`, 'utf8').trim()) * 512n;
  } catch {
    const one = new Uint8Array(1);
    const readsAt = (at: bigint): boolean => fs.readSync(fd, one, 0, 1, Number(at)) === 1;
    let lo = 0n; // a byte known to be there, or 0
    let hi = 1n << 20n;
    while (readsAt(hi - 1n)) hi *= 2n; // hi - 1 is past the end now
    while (hi - lo > 1n) {
      const mid = (lo + hi) / 2n;
      if (readsAt(mid - 1n)) lo = mid;
      else hi = mid;
    }
    return lo;
  }
}
