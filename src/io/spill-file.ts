import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from '../errors.js';
import { PageStore, type SpillBackend } from '../image/write/page-store.js';

/**
 * Spill backend of the item maps on a temporary file. It is unlinked as soon as it is open, so it
 * disappears with the process however that ends (kill -9 included) and never shows beside the image.
 * Placed next to the image by default: that is where the user expects the receive to use disk, and /tmp
 * may be a RAM-backed tmpfs, which would defeat the purpose.
 */
export class SpillFile implements SpillBackend {
  private constructor(private fd: number, readonly where: string) {}

  static create(dir: string = tmpdir()): SpillFile {
    const path = join(dir, `.btrfs-ts-spill-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
    let fd: number;
    try {
      fd = fs.openSync(path, 'wx+', 0o600);
    } catch (err) {
      if (dir !== tmpdir()) return SpillFile.create(tmpdir());
      throw new ImageError('IMAGE_SPILL', `cannot create a spill file in ${dir}: ${(err as Error).message}`, { cause: err });
    }
    try {
      fs.unlinkSync(path);
    } catch {
      /* still usable; it is removed on close */
    }
    return new SpillFile(fd, path);
  }

  write(offset: number, bytes: Uint8Array): void {
    let done = 0;
    try {
      while (done < bytes.length) done += fs.writeSync(this.fd, bytes, done, bytes.length - done, offset + done);
    } catch (err) {
      throw new ImageError('IMAGE_SPILL', `cannot write the metadata spill file (${this.where}, deleted): ${(err as Error).message}`, { cause: err });
    }
  }

  read(offset: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, out, done, len - done, offset + done);
      if (n === 0) throw new ImageError('IMAGE_SPILL', `metadata spill file ended early at ${offset + done} (${this.where})`);
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    try {
      fs.unlinkSync(this.where);
    } catch {
      /* already unlinked at create */
    }
    this.fd = -1;
  }
}

/** Default budget for decoded metadata pages; BTRFS_TS_METADATA_CACHE (bytes, K/M/G) overrides it. */
export const DEFAULT_METADATA_CACHE = 8 << 20;

/** A PageStore that spills to a file in `dir`; close the returned file when the filesystem is done. */
export function spillingPageStore(dir: string, budget: number = DEFAULT_METADATA_CACHE): { store: PageStore; spill: SpillFile } {
  const spill = SpillFile.create(dir);
  return { store: new PageStore({ budget, spill }), spill };
}
