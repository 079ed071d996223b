import * as fs from 'node:fs';
import type { BlockDevice } from '../image/device.js';
import { ImageError } from '../errors.js';

/**
 * BlockDevice on a regular file (or a block device node) with positional I/O. Sparse by nature: growing
 * only truncates upward, so unwritten ranges of a large image cost no disk space.
 */
export class FileDevice implements BlockDevice {
  private fd: number;
  private bytes: bigint;
  private readonly path: string;

  private constructor(path: string, fd: number, size: bigint) {
    this.path = path;
    this.fd = fd;
    this.bytes = size;
  }

  /** Open an existing image read-write. */
  static open(path: string, opts: { readonly?: boolean } = {}): FileDevice {
    let fd: number;
    try {
      fd = fs.openSync(path, opts.readonly ? 'r' : 'r+');
    } catch (err) {
      throw new ImageError('IMAGE_OPEN', `cannot open image ${path}: ${(err as Error).message}`, { cause: err });
    }
    const st = fs.fstatSync(fd, { bigint: true });
    return new FileDevice(path, fd, st.size);
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
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, out, done, len - done, Number(offset) + done);
      if (n === 0) break; // past EOF reads as zeros
      done += n;
    }
    return out;
  }

  write(offset: bigint, bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      try {
        done += fs.writeSync(this.fd, bytes, done, bytes.length - done, Number(offset) + done);
      } catch (err) {
        // the image position goes into the message: the error's offset field means a stream offset to the CLI
        throw new ImageError('IMAGE_WRITE', `write of ${bytes.length} bytes at image offset ${offset} of ${this.path} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    const end = offset + BigInt(bytes.length);
    if (end > this.bytes) this.bytes = end;
  }

  flush(): void {
    fs.fsyncSync(this.fd);
  }

  grow(newSize: bigint): void {
    if (newSize <= this.bytes) return;
    try {
      fs.ftruncateSync(this.fd, Number(newSize));
    } catch (err) {
      throw new ImageError('IMAGE_GROW', `cannot grow ${this.path} to ${newSize} bytes: ${(err as Error).message}`, { cause: err });
    }
    this.bytes = newSize;
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
