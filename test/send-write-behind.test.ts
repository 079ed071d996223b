import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSink } from '../src/io/file-sink.js';
import { DataFill } from '../src/send/data-fill.js';
import { NativeFill } from '../src/send/data-fill-native.js';
import { BufferPool } from '../src/util/bytes.js';
import { bytes, countingWriteBehind, sumsOf } from './helpers/write-behind.js';

/**
 * The output of a full --compressed-data send written by the data-fill thread (native/data-fill.c
 * write_job, DataFill.postWrite, FileSink's WriteBehind) instead of libuv's pool. Oracle: the file read
 * back against the buffers handed over, in order; which writes were left to the in-line fallback is
 * counted through a WriteBehind that wraps the DataFill. A full file: io-file-sink.test.ts.
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-wb-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const data = bytes(64 * 1024, 7);
const image = join(work, 'image');
beforeAll(() => {
  const fd = openSync(image, 'w');
  writeSync(fd, data, 0, data.length, 0);
  closeSync(fd);
});

describe.skipIf(!NativeFill.available)("writes on the addon's data-fill thread", () => {
  it('a write job comes after the jobs before it and writes what they filled; one the thread cannot do goes to its fallback; each is settled in order', async () => {
    const pool = new BufferPool(128 * 1024, 2, { shared: true });
    const [o1, o2] = [pool.take(), pool.take()];
    const fill = new DataFill({ path: image, arena: pool.arena!, take: false });
    const out = join(work, 'jobs.out');
    const fd = openSync(out, 'w');
    const seen: string[] = [];
    try {
      o1.fill(0xaa);
      await fill.post(o1.subarray(4096, 4096 + data.length), data.length, [0n], sumsOf(data), async () => { seen.push('fill redone'); });
      expect(fill.writesBehind(o1)).toBe(true);
      expect(fill.writesBehind(new Uint8Array(16))).toBe(false); // not the arena
      // the write is posted before the fill job is done: the thread does them in order
      const j1 = await fill.postWrite(fd, o1, 100, async () => { seen.push('w1 in line'); }, () => seen.push('w1 settled'));
      // a descriptor the thread refuses: left to the fallback, which writes it here
      o2.set(bytes(o2.length, 3));
      const j2 = await fill.postWrite(-1, o2, 100 + o1.length, async () => { seen.push('w2 in line'); writeSync(fd, o2, 0, o2.length, 100 + o1.length); }, () => seen.push('w2 settled'));
      expect(j2).toBe(j1 + 1);
      await fill.settleJob(j1);
      expect(seen).toEqual(['w1 settled']);
      await fill.settleJob(j2);
      expect(seen).toEqual(['w1 settled', 'w2 in line', 'w2 settled']);
    } finally {
      fill.close();
      closeSync(fd);
    }
    const got = readFileSync(out);
    const want = new Uint8Array(100 + o1.length + o2.length);
    want.set(o1, 100);
    want.set(o2, 100 + o1.length);
    expect(Buffer.compare(o1.subarray(4096, 4096 + data.length), data)).toBe(0);
    expect(Buffer.compare(got, want)).toBe(0);
  });

  it('a FileSink with the DataFill writes every arena buffer on the thread, in place, and gives each back', async () => {
    for (const limit of [1, 300_000]) {
      const pool = new BufferPool(64 * 1024, 8, { shared: true });
      const fill = new DataFill({ path: image, arena: pool.arena!, take: false });
      const behind = countingWriteBehind(fill);
      const path = join(work, `sink-${limit}.out`);
      const parts: Uint8Array[] = [];
      try {
        const sink = await FileSink.open(path, pool, limit, behind);
        for (let i = 0; i < 100; i++) {
          // arena buffers (whole or a prefix) and, every fifth, one of other origins (written by the pool)
          const b = i % 5 === 4 ? bytes(1 + i * 37, i) : pool.take().subarray(0, i % 2 ? 64 * 1024 : 1 + i * 101);
          if (i % 5 !== 4) b.set(bytes(b.length, i));
          parts.push(b.slice());
          await sink.write(b);
        }
        await sink.close();
      } finally {
        fill.close();
      }
      expect(behind.inLine).toBe(0);
      expect(Buffer.from(readFileSync(path)).equals(Buffer.concat(parts))).toBe(true);
      const back = new Set<number>();
      for (let i = 0; i < 8; i++) back.add(pool.take().byteOffset);
      expect(back.size).toBe(8);
    }
  });
});

describe('a DataFill that writes nothing behind', () => {
  it('on the JavaScript worker (native: false) it takes no write: the FileSink writes on the pool', async () => {
    const pool = new BufferPool(64 * 1024, 4, { shared: true });
    const fill = new DataFill({ path: image, arena: pool.arena!, native: false, take: false });
    try {
      expect(fill.writesBehind(pool.take())).toBe(false);
    } finally {
      fill.close();
    }
  });
});
