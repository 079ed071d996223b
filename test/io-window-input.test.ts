import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openInput } from '../src/io/input.js';
import { FileWindowInput, WindowReader } from '../src/io/window-input.js';
import { alignedBytes, alignedShared, padToAlign, READ_ALIGN } from '../src/util/aligned.js';
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
// this file tests the read(2) window; files are read through mappings where the addon can (test/io-mapped-input.test.ts)
beforeAll(() => vi.stubEnv('BTRFS_TS_MMAP', 'off'));
afterAll(() => vi.unstubAllEnvs());

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
      const input = new FileWindowInput(openSync(path, 'r'), 1 << 20);
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
          if (v.byteOffset < READ_ALIGN) moved++; // the unread bytes were moved to the front (or it is the first take)
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
    const r = new FileWindowInput(openSync(path, 'r'), 1 << 20).openWindow();
    expect(await r.fill(4)).toBe(4);
    expect(Buffer.from(r.take(4)).toString()).toBe('0123');
    expect(await r.fill(100)).toBe(6);
    expect(Buffer.from(r.take(6)).toString()).toBe('456789');
    await r.close();
  });

  it('is read once: a second reader is refused', async () => {
    const path = join(work, 'once');
    writeFileSync(path, Buffer.from('x'));
    const input = new FileWindowInput(openSync(path, 'r'), 1 << 20);
    const r = input.openWindow();
    expect(() => input[Symbol.asyncIterator]()).toThrow(/only once/);
    await r.close();
  });
});

/** A WindowReader over bytes in memory that records where in its buffer each read lands. */
class RecordingReader extends WindowReader {
  readonly landings: number[] = [];
  private at = 0;
  constructor(private readonly bytes: Uint8Array, private readonly short: boolean) {
    super();
  }
  protected readInto(buf: Uint8Array, off: number, len: number): number {
    this.landings.push(buf.byteOffset + off);
    // a pipe gives less than asked; a file all of it
    const n = Math.min(len, this.bytes.length - this.at, this.short ? 1000 + (this.at % 3000) : len);
    buf.set(this.bytes.subarray(this.at, this.at + n), off);
    this.at += n;
    return n;
  }
  protected async closeSource(): Promise<void> {}

  /** Takes all of `bytes` in pieces of size(), checking each against them. */
  async drain(size: () => number): Promise<void> {
    for (let pos = 0; pos < this.bytes.length;) {
      const n = Math.min(this.bytes.length - pos, size());
      expect(await this.fill(n)).toBe(n);
      expect(Buffer.compare(this.take(n), this.bytes.subarray(pos, pos + n))).toBe(0);
      pos += n;
      this.releaseSpent();
    }
  }
}

describe('read destinations (util/aligned.ts)', () => {
  it('every read of a file lands on a READ_ALIGN boundary of the window, whatever the takes', async () => {
    const rand = rng(7);
    const bytes = new Uint8Array(2 << 20).map(() => (rand() * 256) | 0);
    const r = new RecordingReader(bytes, false);
    await r.drain(() => (rand() < 0.05 ? ((rand() * (600 << 10)) | 0) + 1 : ((rand() * 50_000) | 0) + 1));
    expect(r.landings.length).toBeGreaterThan(16);
    expect(r.landings.filter((o) => o % READ_ALIGN !== 0)).toEqual([]);
  });

  it('short reads (a pipe) still give the right bytes; the move after one lands aligned again', async () => {
    const rand = rng(8);
    const bytes = new Uint8Array(3 << 20).map(() => (rand() * 256) | 0);
    const r = new RecordingReader(bytes, true);
    await r.drain(() => ((rand() * 90_000) | 0) + 1);
    // a landing below the one before follows a move of the unread bytes to the front: aligned again
    const afterMoves = r.landings.filter((o, i) => i > 0 && o < r.landings[i - 1]!);
    expect(afterMoves.length).toBeGreaterThan(4);
    expect(afterMoves.filter((o) => o % READ_ALIGN !== 0)).toEqual([]);
  });

  it('alignedBytes / alignedShared: zeroed, of the size asked, at offset 0; padToAlign ends a run on a boundary', () => {
    const b = alignedBytes(100_000);
    expect(b.length).toBe(100_000);
    expect(b.byteOffset).toBe(0);
    expect(b.every((x) => x === 0)).toBe(true);
    const s = alignedShared(70_000);
    expect(s).toBeInstanceOf(SharedArrayBuffer);
    expect(s.byteLength).toBeGreaterThanOrEqual(70_000);
    for (const len of [0, 1, 63, 64, 65, 1000]) expect((len + padToAlign(len)) % READ_ALIGN).toBe(0);
    expect(padToAlign(128)).toBe(0);
  });
});

const show = showItem;

describe.each(['off', 'on'])('parser over a file window (openInput, reuseInput; BTRFS_TS_MMAP=%s)', (mmap) => {
  beforeAll(() => vi.stubEnv('BTRFS_TS_MMAP', mmap));
  afterAll(() => vi.stubEnv('BTRFS_TS_MMAP', 'off'));
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
