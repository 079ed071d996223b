import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openInput } from '../src/io/input.js';
import { FileWindowInput } from '../src/io/window-input.js';
import { parseStream } from '../src/stream/parser.js';
import { isWindowSource } from '../src/stream/source.js';
import { showItem } from './helpers/show-item.js';
import { STREAMS } from './hostile/harness.js';

/**
 * FileWindowInput: commands are views into one window that read(2) refills. Oracle: the file's own bytes
 * (takes of every size, including larger than the window), and the parse of the same stream from one
 * plain buffer.
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-window-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

describe('FileWindowInput window reader', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: every take equals the file's bytes; views stay intact until releaseSpent`, async () => {
      const rand = rng(seed);
      const bytes = new Uint8Array(3 << 20);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (rand() * 256) | 0;
      const path = join(work, `bytes-${seed}`);
      writeFileSync(path, bytes);
      const input = new FileWindowInput(await open(path, 'r'), 1 << 20);
      const r = input.openWindow();
      let pos = 0;
      let moved = 0;
      while (pos < bytes.length) {
        r.releaseSpent();
        // a few takes per "command", as the parser does (header, then payload), some larger than the window
        const views: [Uint8Array, number][] = [];
        for (let k = 0; k < 3 && pos < bytes.length; k++) {
          const big = rand() < 0.05;
          const n = Math.min(bytes.length - pos, big ? ((rand() * (700 << 10)) | 0) + 1 : ((rand() * 70_000) | 0) + 1);
          const got = await r.fill(n);
          expect(got).toBe(n);
          expect(r.position).toBe(pos);
          const v = r.take(n);
          views.push([v, pos]);
          pos += n;
        }
        for (const [v, at] of views) {
          expect(Buffer.compare(v, bytes.subarray(at, at + v.length))).toBe(0);
          if (v.byteOffset === 0) moved++;
        }
      }
      expect(await r.fill(1)).toBe(0);
      expect(moved).toBeGreaterThan(0);
      await r.close();
    });
  }

  it('fill at the end of the file gives what is left', async () => {
    const path = join(work, 'short');
    writeFileSync(path, Buffer.from('0123456789'));
    const r = new FileWindowInput(await open(path, 'r'), 1 << 20).openWindow();
    expect(await r.fill(4)).toBe(4);
    expect(Buffer.from(r.take(4)).toString()).toBe('0123');
    expect(await r.fill(100)).toBe(6);
    expect(Buffer.from(r.take(6)).toString()).toBe('456789');
    await r.close();
  });

  it('is read once: a second reader is refused', async () => {
    const path = join(work, 'once');
    writeFileSync(path, Buffer.from('x'));
    const input = new FileWindowInput(await open(path, 'r'), 1 << 20);
    const r = input.openWindow();
    expect(() => input[Symbol.asyncIterator]()).toThrow(/only once/);
    await r.close();
  });
});

const show = showItem;

describe('parser over a file window (openInput, reuseInput)', () => {
  for (const name of ['full-v1', 'full-v2', 'zstd-v2', 'multi-v1', 'clones-v1']) {
    it(`${name}: the same commands as from one buffer; what is kept past a command is intact`, async () => {
      const file = join(STREAMS, `${name}.stream`);
      const expected: string[] = [];
      for await (const item of parseStream([new Uint8Array(readFileSync(file))])) expected.push(show(item));
      const input = await openInput(file);
      expect(isWindowSource(input)).toBe(true);
      const atYield: string[] = [];
      const kept: unknown[] = [];
      for await (const item of parseStream(input, { reuseInput: true })) {
        atYield.push(show(item));
        kept.push(item);
      }
      expect(atYield).toEqual(expected);
      const noData = (s: string) => s.replace(/"data":"crc:\d+"/g, '');
      expect(kept.map((c) => noData(show(c)))).toEqual(expected.map(noData));
    });
  }

  it('without reuseInput the file is read as chunks that stay valid', async () => {
    const file = join(STREAMS, 'full-v1.stream');
    const expected: string[] = [];
    for await (const item of parseStream([new Uint8Array(readFileSync(file))])) expected.push(show(item));
    const kept: unknown[] = [];
    for await (const item of parseStream(await openInput(file))) kept.push(item);
    expect(kept.map(show)).toEqual(expected);
  });
});
