import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageError } from '../src/errors.js';
import { FileDevice, openDirect } from '../src/io/image-file.js';
import { WriteBehind } from '../src/io/write-behind.js';
import { alignedShared } from '../src/util/aligned.js';
import { tmpDir } from './image-write-helpers.js';

// Oracle: the file's bytes read back with plain fs.readFileSync after the writer is done, against a
// model that applies the same writes in order to a buffer (overlapping writes make the order visible).
const work = tmpDir('btrfs-ts-wb-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) out[i] = (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) >>> 24;
  return out;
}

/**
 * A zeroed file of `size` bytes written through a WriteBehind of `capacity` (with an O_DIRECT second
 * descriptor when `direct`; -1 where the file system refuses it, and the thread then writes everything
 * through the first: the same bytes) by `body`, which applies each write to `model` too. Afterwards: a
 * flush without failure, and the file equal to the model.
 */
function writtenThrough(name: string, size: number, capacity: number, direct: boolean, body: (wb: WriteBehind, model: Uint8Array) => void): void {
  const file = join(work, name);
  writeFileSync(file, new Uint8Array(size));
  const fd = openSync(file, 'r+');
  const dfd = direct ? openDirect(file) : -1;
  const wb = new WriteBehind(fd, capacity, undefined, dfd);
  const model = new Uint8Array(size);
  try {
    body(wb, model);
    wb.flush();
    expect(wb.failed()).toBeUndefined();
  } finally {
    wb.stop();
    if (dfd >= 0) closeSync(dfd);
    closeSync(fd);
  }
  expect(Buffer.compare(readFileSync(file), model)).toBe(0);
}

describe('write-behind thread', () => {
  it('performs writes in order through ring wrap-arounds, writes as large as the ring (and 1-7 bytes short of it), sources at any alignment, and flushes', () => {
    const SIZE = 1 << 20;
    const cap = 64 * 1024;
    const r = rng(42);
    writtenThrough('ring.bin', SIZE, cap, false, (wb, model) => {
      for (let i = 0; i < 600; i++) {
        const len = i % 50 === 7 ? cap - (i % 8) : 1 + Math.floor(r() * r() * cap);
        const off = Math.floor(r() * (SIZE - len));
        // sources at every offset within a word (the ring places each alike: write-behind.ts)
        const holder = new Uint8Array(len + 8);
        const data = holder.subarray(i % 8, i % 8 + len);
        data.set(bytes(len, i + 1));
        expect(wb.write(off, data)).toBe(true);
        // the caller may reuse its buffer at once: the ring holds a copy
        data.fill(0xee);
        model.set(bytes(len, i + 1), off);
        if (i % 97 === 0) wb.flush();
      }
      expect(wb.write(0, new Uint8Array(cap + 1))).toBe(false);
    });
  });
});

describe('write-behind thread copying from another file', () => {
  // copy_file_range through the addon, and through a buffer where the thread has none (BTRFS_TS_NATIVE=off,
  // which the thread inherits): the same bytes, in queue order with the writes around and over them
  for (const engine of ['copy_file_range', 'buffer'] as const) {
    it(`copies ranges of a source file in order with writes (${engine})`, () => {
      const SIZE = 4 << 20;
      const source = bytes(3 << 20, 77);
      const srcFile = join(work, `source-${engine}.bin`);
      writeFileSync(srcFile, source);
      const src = openSync(srcFile, 'r');
      const was = process.env['BTRFS_TS_NATIVE'];
      if (engine === 'buffer') process.env['BTRFS_TS_NATIVE'] = 'off';
      const r = rng(11);
      try {
        writtenThrough(`copy-${engine}.bin`, SIZE, 64 * 1024, true, (wb, model) => {
          for (let i = 0; i < 300; i++) {
            const len = 1 + Math.floor(r() * r() * (1 << 20));
            const off = Math.floor(r() * (SIZE - len));
            if (i % 3 === 0) {
              const data = bytes(Math.min(len, 60_000), 900 + i);
              expect(wb.write(off, data)).toBe(true);
              model.set(data, off);
            } else {
              const from = Math.floor(r() * (source.length - len));
              expect(wb.copyFrom(off, src, from, len)).toBe(true);
              model.set(source.subarray(from, from + len), off);
            }
          }
        });
        // past the source's end: a failure, reported as such
        const file = join(work, `copy-short-${engine}.bin`);
        writeFileSync(file, new Uint8Array(8192));
        const fd = openSync(file, 'r+');
        const wb = new WriteBehind(fd, 64 * 1024);
        try {
          wb.copyFrom(0, src, source.length - 100, 200);
          wb.flush();
          expect(wb.failed()?.message).toMatch(/ends before byte/);
        } finally {
          wb.stop();
          closeSync(fd);
        }
      } finally {
        if (was === undefined) delete process.env['BTRFS_TS_NATIVE'];
        else process.env['BTRFS_TS_NATIVE'] = was;
        closeSync(src);
      }
    });
  }
});

describe('write-behind thread with an O_DIRECT descriptor', () => {
  it('writes large block-aligned writes directly, in order with the buffered ones around and over them', () => {
    const SIZE = 24 << 20;
    const r = rng(7);
    writtenThrough('direct.bin', SIZE, 8 << 20, true, (wb, model) => {
      const put = (off: number, data: Uint8Array) => {
        expect(wb.write(off, data)).toBe(true);
        model.set(data, off);
        data.fill(0xee); // the ring holds a copy
      };
      for (let i = 0; i < 40; i++) {
        // direct candidates: 1-8 MiB of whole blocks at block offsets (a gather buffer's extent), some from a
        // source at byteOffset 8 (still word-aligned), some an odd length (buffered)
        const blocks = 256 + Math.floor(r() * 1792);
        const len = i % 5 === 4 ? blocks * 4096 - 100 : blocks * 4096;
        const off = Math.floor(r() * ((SIZE - len) / 4096)) * 4096;
        const holder = new Uint8Array(len + 8);
        const data = holder.subarray(i % 3 === 0 ? 8 : 0, (i % 3 === 0 ? 8 : 0) + len);
        data.set(bytes(len, 100 + i));
        put(off, data);
        // small buffered writes over what was just queued: their order against the direct ones shows
        put(off + 4096 * (i % 7), bytes(5000 + i, 200 + i));
        if (i % 9 === 0) wb.flush();
      }
      // direct writes only, each over the one before (two are in flight at once): the later must win,
      // also where it is the shorter one (2.5 MiB, then 1 MiB inside it: the disk would finish it first)
      for (let i = 0; i < 30; i++) {
        const len = i % 2 === 0 ? 640 * 4096 : 256 * 4096;
        put((i % 10) * (512 << 10), bytes(len, 300 + i));
      }
    });
  });
});

describe('write-behind thread writing lent buffers', () => {
  it('writes from shared memory without a copy, in queue order with the copied writes; a lent buffer changes only after doneThrough', () => {
    const SIZE = 32 << 20;
    // three page-aligned shared buffers used in turn, as the receive's gather buffers are
    const bufs = [0, 1, 2].map(() => new Uint8Array(alignedShared(3 << 20), 0, 3 << 20));
    const until = [0, 0, 0];
    const r = rng(11);
    writtenThrough('lent.bin', SIZE, 4 << 20, true, (wb, model) => {
      // not lendable: plain memory, under 1 MiB, not whole blocks, at an unaligned image offset or memory offset
      expect(wb.lend(0, new Uint8Array(1 << 20))).toBe(-1);
      expect(wb.lend(0, bufs[0]!.subarray(0, 4096 * 200))).toBe(-1);
      expect(wb.lend(0, bufs[0]!.subarray(0, (1 << 20) + 100))).toBe(-1);
      expect(wb.lend(512, bufs[0]!.subarray(0, 1 << 20))).toBe(-1);
      expect(wb.lend(0, bufs[0]!.subarray(512, 512 + (1 << 20)))).toBe(-1);
      for (let i = 0; i < 30; i++) {
        const k = i % 3;
        const b = bufs[k]!;
        wb.doneThrough(until[k]!);
        const len = (256 + Math.floor(r() * 512)) * 4096;
        const off = Math.floor(r() * ((SIZE - len) / 4096)) * 4096;
        b.set(bytes(len, 500 + i));
        until[k] = wb.lend(off, b.subarray(0, len));
        expect(until[k]).toBeGreaterThan(0);
        model.set(b.subarray(0, len), off);
        // a copied write over it: the later one wins
        const small = bytes(3000 + i, 600 + i);
        expect(wb.write(off + 100 * i, small)).toBe(true);
        model.set(small, off + 100 * i);
      }
    });
  });
});

describe('FileDevice with write-behind', () => {
  /** A 32 MiB image file and what it must hold: every write goes to both. */
  const modelDevice = (name: string) => {
    const file = join(work, name);
    const dev = FileDevice.create(file, 32n << 20n);
    const model = new Uint8Array(32 << 20);
    const put = (off: number, data: Uint8Array) => {
      dev.write(BigInt(off), data);
      model.set(data, off);
    };
    return { file, dev, model, put };
  };

  it('reads see queued writes; a write larger than the ring goes after the queued ones', () => {
    const { file, dev, model, put } = modelDevice('dev.img');
    try {
      dev.setWriteBehind(true, 0);
      put(4096, bytes(8192, 1));
      expect(dev.read(4096n, 8192)).toEqual(bytes(8192, 1));
      put(1 << 20, bytes(100_000, 2));
      // 12 MiB: more than the 8 MiB ring, written directly, over the queued write at 1 MiB
      put(0, bytes(12 << 20, 3));
      put((12 << 20) - 10, bytes(4096, 4));
      expect(Buffer.compare(dev.read(0n, 1 << 20), model.subarray(0, 1 << 20))).toBe(0);
      put(30 << 20, bytes(5000, 5));
      expect(dev.size()).toBe(32n << 20n);
      dev.flush();
      put(31 << 20, bytes(10, 6));
      dev.setWriteBehind(false);
    } finally {
      dev.close();
    }
    expect(Buffer.compare(readFileSync(file), model)).toBe(0);
  });

  it('grow() with the thread running extends the file after the queued writes (direct ones in flight); reads past the old end give zeros; a grow below the size cuts nothing', () => {
    const { file, dev, model, put } = modelDevice('grow.img');
    let grown = model;
    try {
      dev.setWriteBehind(true, 0);
      const start = model.length;
      put(start - 4096, bytes(4096, 30));
      // 12 MiB of direct writes in flight, then the size change behind them
      put(0, bytes(12 << 20, 31));
      dev.grow(BigInt(start + (3 << 20)));
      expect(dev.size()).toBe(BigInt(start + (3 << 20)));
      expect(Buffer.compare(dev.read(BigInt(start), 8192), new Uint8Array(8192))).toBe(0);
      // a write past the new end, then a grow to less than that: the file keeps the write
      const past = start + (4 << 20);
      dev.write(BigInt(past), bytes(4096, 32));
      dev.grow(BigInt(past + 4096 - 10));
      dev.flush();
      grown = new Uint8Array(past + 4096);
      grown.set(model);
      grown.set(bytes(4096, 32), past);
      dev.setWriteBehind(false);
    } finally {
      dev.close();
    }
    const got = readFileSync(file);
    expect(got.length).toBe(grown.length);
    expect(Buffer.compare(got, grown)).toBe(0);
  });

  it('writes from shared memory are lent: the bytes change only after settle() says the device is done with them', () => {
    const { file, dev, model, put } = modelDevice('lent.img');
    const buf = new Uint8Array(alignedShared(2 << 20), 0, 2 << 20);
    try {
      dev.setWriteBehind(true, 0);
      for (let i = 0; i < 12; i++) {
        dev.settle(buf.buffer as SharedArrayBuffer);
        buf.set(bytes(2 << 20, 40 + i));
        put((i % 5) << 21, buf);
        expect(typeof dev.settle(buf.buffer as SharedArrayBuffer, false)).toBe('boolean');
      }
      // a read of the lent range sees the lent bytes
      expect(Buffer.compare(dev.read(4n << 20n, 2 << 20), model.subarray(4 << 20, 6 << 20))).toBe(0);
      dev.setWriteBehind(false);
      expect(dev.settle(buf.buffer as SharedArrayBuffer, false)).toBe(true);
    } finally {
      dev.close();
    }
    expect(Buffer.compare(readFileSync(file), model)).toBe(0);
  });

  it('by default the thread starts only past 8 MiB written: what comes before is written in place, in order with what follows', () => {
    const { file, dev, model, put } = modelDevice('lazy.img');
    try {
      dev.setWriteBehind(true);
      for (let i = 0; i < 8; i++) put(i << 20, bytes(1 << 20, 10 + i));
      expect(dev.writingBehind).toBe(false);
      dev.flush();
      expect(Buffer.compare(readFileSync(file).subarray(0, 8 << 20), model.subarray(0, 8 << 20))).toBe(0);
      // past 8 MiB: queued on the thread, over bytes written in place before
      put(8 << 20, bytes(4096, 20));
      expect(dev.writingBehind).toBe(true);
      put(4096, bytes(100_000, 21));
      expect(dev.read(4096n, 100_000)).toEqual(bytes(100_000, 21));
      dev.setWriteBehind(false);
      expect(dev.writingBehind).toBe(false);
    } finally {
      dev.close();
    }
    expect(Buffer.compare(readFileSync(file), model)).toBe(0);
  });

  it.skipIf(!existsSync('/dev/full'))('a failed write is reported at the next flush, as IMAGE_WRITE with the image offset, and stays reported', () => {
    // /dev/full fails every write with ENOSPC; the synchronous path shows the message to match
    const sync = FileDevice.open('/dev/full');
    let syncError: unknown;
    try {
      sync.write(8192n, new Uint8Array(4096));
    } catch (e) {
      syncError = e;
    } finally {
      sync.close();
    }
    expect(syncError).toBeInstanceOf(ImageError);
    expect((syncError as ImageError).code).toBe('IMAGE_WRITE');

    const dev = FileDevice.open('/dev/full');
    try {
      dev.setWriteBehind(true, 0);
      dev.write(8192n, new Uint8Array(4096)); // queued: the thread fails it
      let flushError: unknown;
      try {
        dev.flush();
      } catch (e) {
        flushError = e;
      }
      expect(flushError).toBeInstanceOf(ImageError);
      expect((flushError as ImageError).code).toBe('IMAGE_WRITE');
      expect((flushError as Error).message).toBe((syncError as Error).message);
      expect((flushError as Error).message).toMatch(/write of 4096 bytes at image offset 8192 of \/dev\/full failed: .*no space left/i);
      // later writes are not performed and keep failing with the first error
      expect(() => dev.write(0n, new Uint8Array(10))).toThrow(/image offset 8192/);
      expect(() => dev.setWriteBehind(false)).toThrow(/image offset 8192/);
    } finally {
      dev.close();
    }
  });

  it.skipIf(!existsSync('/dev/full'))('turning write-behind off reports a failure still unreported; close never throws it', () => {
    const dev = FileDevice.open('/dev/full');
    dev.setWriteBehind(true, 0);
    dev.write(0n, new Uint8Array(100));
    expect(() => dev.setWriteBehind(false)).toThrow(ImageError);
    const dev2 = FileDevice.open('/dev/full');
    dev2.setWriteBehind(true, 0);
    dev2.write(0n, new Uint8Array(100));
    expect(() => dev2.close()).not.toThrow();
    dev.close();
  });
});
