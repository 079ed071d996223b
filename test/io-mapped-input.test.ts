import { appendFileSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { canMapFiles, MappedWindowReader } from '../src/io/mapped-input.js';
import { FileWindowInput } from '../src/io/window-input.js';

/**
 * MappedWindowReader: a stream file read through private mappings (the addon's mapFile) instead of read(2).
 * Oracle: the file's own bytes, for takes of every size across small windows (remapped from the page of
 * the first untaken byte), views read again after their pages were dropped, a file that grows while it
 * is read, and a descriptor that cannot be mapped (read(2) instead). Without the addon it says so and
 * skips (the read(2) window is io-window-input.test.ts).
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-mapped-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const mappable = canMapFiles();
if (!mappable) console.log('mapped input: the native addon (mapFile) is not built here or BTRFS_TS_MMAP=off: skipped');

describe.skipIf(!mappable)('MappedWindowReader', () => {
  for (const [seed, window] of [[1, 64 << 10], [2, 200 << 10], [3, 1 << 30]] as const) {
    it(`seed ${seed}, windows of ${window} bytes: every take equals the file's bytes, views intact until releaseSpent and after their pages are dropped`, async () => {
      const rand = rng(seed);
      const bytes = new Uint8Array(70 << 20); // past DROP_EVERY (8 MiB) many times, and YIELD_EVERY's steps
      for (let i = 0; i < bytes.length; i += 4096) bytes.fill((rand() * 256) | 0, i, i + 4096);
      for (let i = 0; i < bytes.length; i += 997) bytes[i] = (rand() * 256) | 0;
      const path = join(work, `bytes-${seed}`);
      writeFileSync(path, bytes);
      const fd = openSync(path, 'r');
      let read = 0;
      const r = MappedWindowReader.open(fd, (n) => (read += n), async () => closeSync(fd), window)!;
      expect(r).toBeDefined();
      let pos = 0;
      let first: Uint8Array | undefined;
      while (pos < bytes.length) {
        r.releaseSpent();
        const views: [Uint8Array, number][] = [];
        for (let k = 0; k < 3 && pos < bytes.length; k++) {
          const big = rand() < 0.02;
          const n = Math.min(bytes.length - pos, big ? ((rand() * (900 << 10)) | 0) + 1 : ((rand() * 70_000) | 0) + 1);
          expect(await r.fill(n)).toBe(n);
          expect(r.position).toBe(pos);
          const v = r.take(n);
          first ??= v;
          views.push([v, pos]);
          pos += n;
        }
        for (const [v, at] of views) expect(Buffer.compare(v, bytes.subarray(at, at + v.length))).toBe(0);
      }
      expect(await r.fill(1)).toBe(0);
      expect(read).toBe(bytes.length);
      // the first view's pages were dropped long ago: read again, they come back from the file
      expect(Buffer.compare(first!, bytes.subarray(0, first!.length))).toBe(0);
      await r.close();
    });
  }

  it('a write into a view changes neither the file nor what is read again of it after a drop', async () => {
    const path = join(work, 'private');
    writeFileSync(path, new Uint8Array(40 << 20).fill(7));
    const fd = openSync(path, 'r');
    const r = MappedWindowReader.open(fd, undefined, async () => closeSync(fd))!;
    await r.fill(4096);
    const v = r.take(4096);
    v.fill(9);
    expect(readFileSync(path).subarray(0, 4096).every((b) => b === 7)).toBe(true);
    await r.fill(36 << 20);
    r.take(36 << 20);
    r.releaseSpent(); // drops the pages behind, the written one too
    expect(v.every((b) => b === 7)).toBe(true);
    await r.close();
  });

  it('reads on past the size the file had at the start when it grows meanwhile; an empty file is at its end', async () => {
    const path = join(work, 'growing');
    writeFileSync(path, new Uint8Array(10_000).fill(1));
    const fd = openSync(path, 'r');
    const r = MappedWindowReader.open(fd, undefined, async () => closeSync(fd))!;
    expect(await r.fill(10_000)).toBe(10_000);
    r.take(10_000);
    appendFileSync(path, new Uint8Array(5000).fill(2));
    expect(await r.fill(5000)).toBe(5000);
    expect(r.take(5000).every((b) => b === 2)).toBe(true);
    expect(await r.fill(1)).toBe(0);
    await r.close();
    const empty = join(work, 'empty');
    writeFileSync(empty, '');
    const efd = openSync(empty, 'r');
    const e = MappedWindowReader.open(efd, undefined, async () => closeSync(efd))!;
    expect(await e.fill(1)).toBe(0);
    await e.close();
  });

  it('what cannot be mapped (a pipe) is read with read(2); BTRFS_TS_MMAP=off reads files with read(2)', async () => {
    const fifo = join(work, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const fd = openSync(fifo, 'r+');
    expect(MappedWindowReader.open(fd)).toBeUndefined();
    closeSync(fd);
    const path = join(work, 'plain');
    writeFileSync(path, new Uint8Array(100).fill(3));
    expect(new FileWindowInput(openSync(path, 'r'), 1 << 20).openWindow()).toBeInstanceOf(MappedWindowReader);
    vi.stubEnv('BTRFS_TS_MMAP', 'off');
    try {
      const r = new FileWindowInput(openSync(path, 'r'), 1 << 20).openWindow();
      expect(r).not.toBeInstanceOf(MappedWindowReader);
      expect(await r.fill(100)).toBe(100);
      await r.close();
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
