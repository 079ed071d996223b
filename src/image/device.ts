import type { FileRange } from '../io/file-range.js';

/**
 * Block device abstraction the image writer and reader sit on. Synchronous on purpose: the writer's
 * commit is a long sequence of small positional writes, and `fs.readSync`/`fs.writeSync` on a file are
 * both simpler and faster than promise round-trips for that pattern. Implementations: `MemoryDevice`
 * (tests, pure) and `FileDevice` in src/io/image-file.ts (node:fs, positional I/O, fsync).
 */
export interface BlockDevice {
  /** Current size in bytes. */
  size(): bigint;
  /** Read exactly `len` bytes at `offset`; bytes past the end read as zeros. */
  read(offset: bigint, len: number): Uint8Array;
  /**
   * Write `bytes` at `offset`; writing past the end grows the device. `from`: the same bytes are there in
   * a file (io/file-range.ts), and the device may copy them from it instead.
   */
  write(offset: bigint, bytes: Uint8Array, from?: FileRange): void;
  /** Make every previous write durable before returning (fsync). Commit ordering depends on it. */
  flush(): void;
  /** Grow (never shrink) to `newSize` bytes. */
  grow(newSize: bigint): void;
  /**
   * Optional: let writes complete in the background (on another thread) while the caller goes on; read()
   * and flush() still see every earlier write, and a failed write is thrown at the next write, read or
   * flush. Turning it off waits for the queued writes and throws a failure among them. A device may
   * write the first `startAfter` bytes in place (a small receive is not worth a thread).
   */
  setWriteBehind?(on: boolean, startAfter?: number): void;
  /**
   * Optional, with write-behind: write() may keep reading bytes that lie in a SharedArrayBuffer after it
   * returns (they are lent, not copied). The caller changes such bytes only after settle(buffer) — which
   * waits until the device is done with them, or with `wait` false only says whether it is.
   */
  settle?(buffer: SharedArrayBuffer, wait?: boolean): boolean;
}

/** Growable in-memory device, stored as 1 MiB pages so sparse multi-GiB images cost nothing. */
export class MemoryDevice implements BlockDevice {
  private static readonly PAGE = 1 << 20;
  private readonly pages = new Map<number, Uint8Array>();
  private bytes: bigint;
  /** Number of write() calls so far; tests use it to inject crashes. */
  writes = 0;
  flushes = 0;

  constructor(size: bigint = 0n) {
    this.bytes = size;
  }

  size(): bigint {
    return this.bytes;
  }

  read(offset: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    this.forPages(offset, len, (page, pageOff, bufOff, n) => {
      const p = this.pages.get(page);
      if (p) out.set(p.subarray(pageOff, pageOff + n), bufOff);
    });
    return out;
  }

  write(offset: bigint, bytes: Uint8Array): void {
    this.writes++;
    this.forPages(offset, bytes.length, (page, pageOff, bufOff, n) => {
      let p = this.pages.get(page);
      if (!p) {
        p = new Uint8Array(MemoryDevice.PAGE);
        this.pages.set(page, p);
      }
      p.set(bytes.subarray(bufOff, bufOff + n), pageOff);
    });
    const end = offset + BigInt(bytes.length);
    if (end > this.bytes) this.bytes = end;
  }

  flush(): void {
    this.flushes++;
  }

  grow(newSize: bigint): void {
    if (newSize > this.bytes) this.bytes = newSize;
  }

  private forPages(offset: bigint, len: number, fn: (page: number, pageOff: number, bufOff: number, n: number) => void): void {
    let pos = Number(offset);
    let done = 0;
    while (done < len) {
      const page = Math.floor(pos / MemoryDevice.PAGE);
      const pageOff = pos % MemoryDevice.PAGE;
      const n = Math.min(len - done, MemoryDevice.PAGE - pageOff);
      fn(page, pageOff, done, n);
      done += n;
      pos += n;
    }
  }
}
