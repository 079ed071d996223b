import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BtrfsImage } from '../src/image/read/index.js';
import { BTRFS_COMPRESS_NONE, BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_REG, decodeFileExtentItem } from '../src/image/structs.js';
import { openImageFile } from '../src/io/image-read-file.js';
import { DataFill } from '../src/send/data-fill.js';
import { FillThread } from '../src/send/data-fill-worker.js';
import { NativeFill } from '../src/send/data-fill-native.js';
import { sendSubvolume } from '../src/send/index.js';
import { BufferPool } from '../src/util/bytes.js';
import { encodeAll } from './helpers/craft.js';
import { collect } from './helpers/streams.js';
import * as C from '../src/stream/constants.js';
import { skipReason } from './helpers/oracle.js';
import { sumsOf } from './helpers/write-behind.js';

/**
 * Data read into the send's output on a second thread (src/send/data-fill.ts): the worker reads each job
 * into shared output memory from the first copy whose sectors match, and what it cannot do is done again
 * in line, which reports it as a send without the thread does. The CLI's full --compressed-data send
 * uses it (a shared buffer pool); its streams must be those of the library's send without it, and its
 * other sends' too, byte for byte, also when the first
 * copy of DUP data is damaged, and a damaged extent with no good copy must fail in the same words. The
 * worker and the CLI run the compiled modules (dist/), which `npm test` builds first.
 */
const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'dist');
const BIN = join(ROOT, 'bin', 'btrfs-ts.js');
const built = existsSync(join(DIST, 'send', 'data-fill.js')) && existsSync(join(DIST, 'image', 'structs', 'csum.js'));
const MODULES = pathToFileURL(DIST + '/').href;
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-fill-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Sector-sized blocks of distinct bytes. */
function blocks(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (i * 131 + seed * 7 + (i >> 12)) & 0xff;
  return out;
}

/** The two engines of the jobs: the addon's thread (native/data-fill.c) where there is one, and the worker. */
const ENGINES = [{ engine: "the addon's thread", native: true }, { engine: 'the JavaScript worker', native: false }].filter((x) => !x.native || NativeFill.available);

describe.skipIf(!built).each(ENGINES)('the data-fill jobs on $engine', ({ native }) => {
  // the addon's thread loads no modules: with none to load, the jobs must still be done (not left to their fallbacks)
  const modules = native ? 'file:///nonexistent/' : MODULES;
  const a = blocks(1, 128 * 1024);
  const b = blocks(2, 32 * 1024);
  const bad = a.slice();
  bad[5000] ^= 1;
  const file = join(work, 'copies');
  beforeAll(() => {
    // a: a bad copy at 0, a good one at 1 MiB; b: good at 2 MiB
    const fd = openSync(file, 'w');
    writeSync(fd, bad, 0, bad.length, 0);
    writeSync(fd, a, 0, a.length, 1 << 20);
    writeSync(fd, b, 0, b.length, 2 << 20);
    closeSync(fd);
  });

  it('fills rooms in the arena from the first matching copy; a job with no matching copy is redone by its fallback', async () => {
    const pool = new BufferPool(1 << 20, 2, { shared: true });
    const out = pool.take();
    const fill = new DataFill({ path: file, arena: pool.arena!, modules, take: false, native });
    const redone: string[] = [];
    try {
      const ra = out.subarray(4096, 4096 + a.length);
      const rb = out.subarray(200_000, 200_000 + b.length);
      const rc = out.subarray(300_000, 300_000 + a.length);
      expect(fill.takes(ra, a.length)).toBe(true);
      expect(fill.takes(new Uint8Array(a.length), a.length)).toBe(false); // not the arena
      expect(fill.takes(ra, 1000)).toBe(false); // not whole sectors
      await fill.post(ra, a.length, [0n, 1n << 20n], sumsOf(a), async () => { redone.push('a'); });
      await fill.post(rb, b.length, [2n << 20n], sumsOf(b), async () => { redone.push('b'); });
      // only the bad copy: left to the fallback, which fills it here
      await fill.post(rc, a.length, [0n], sumsOf(a), async () => { redone.push('c'); rc.set(a); });
      await fill.settle();
      expect(redone).toEqual(['c']);
      expect(Buffer.compare(ra, a)).toBe(0);
      expect(Buffer.compare(rb, b)).toBe(0);
      expect(Buffer.compare(rc, a)).toBe(0);
    } finally {
      fill.close();
    }
  });

  it('closes while its thread sleeps or works, many times over: close returns, nothing is left running', async () => {
    const pool = new BufferPool(256 * 1024, 1, { shared: true });
    const out = pool.take();
    for (let i = 0; i < 60; i++) {
      const fill = new DataFill({ path: file, arena: pool.arena!, modules, take: false, native });
      await fill.post(out.subarray(0, b.length), b.length, [2n << 20n], sumsOf(b), async () => { throw new Error('not to be redone'); });
      // every third one closed with its job maybe still out, the others once it is done and the thread sleeps
      if (i % 3 !== 0) await fill.settle();
      fill.close();
    }
  });

  it("settles a buffer's jobs and those before it; a fallback's error comes out of settle", async () => {
    const pool = new BufferPool(256 * 1024, 3, { shared: true });
    const [o1, o2] = [pool.take(), pool.take()];
    const fill = new DataFill({ path: file, arena: pool.arena!, modules, take: false, native });
    try {
      await fill.post(o1.subarray(0, b.length), b.length, [2n << 20n], sumsOf(b), async () => { throw new Error('not to be redone'); });
      await fill.post(o2.subarray(0, b.length), b.length, [2n << 20n], sumsOf(b), async () => { throw new Error('not to be redone'); });
      await fill.settleThrough(o1);
      expect(Buffer.compare(o1.subarray(0, b.length), b)).toBe(0);
      await fill.post(o2.subarray(65536, 65536 + a.length), a.length, [0n], sumsOf(a), async () => { throw new Error('data checksum mismatch here'); });
      await expect(fill.settleThrough(o2)).rejects.toThrow('data checksum mismatch here');
    } finally {
      fill.close();
    }
  });
  it('a thread started before the DataFill (FillThread) says when it has started and does the jobs it is given', async () => {
    const thread = new FillThread(MODULES);
    const pool = new BufferPool(1 << 20, 1, { shared: true });
    const out = pool.take();
    const fill = new DataFill({ path: file, arena: pool.arena!, modules: 'file:///nonexistent/', thread, take: false });
    try {
      for (let i = 0; !thread.ready; i++) {
        expect(i).toBeLessThan(500); // 5 s
        await new Promise((r) => setTimeout(r, 10));
      }
      const redone: string[] = [];
      // the DataFill's own `modules` would not load: the jobs are the given thread's
      await fill.post(out.subarray(0, a.length), a.length, [0n, 1n << 20n], sumsOf(a), async () => { redone.push('a'); });
      await fill.post(out.subarray(a.length, a.length + b.length), b.length, [2n << 20n], sumsOf(b), async () => { redone.push('b'); });
      await fill.settle();
      expect(redone).toEqual([]);
      expect(Buffer.compare(out.subarray(0, a.length), a)).toBe(0);
      expect(Buffer.compare(out.subarray(a.length, a.length + b.length), b)).toBe(0);
    } finally {
      fill.close();
    }
  });
});

describe.skipIf(!built).each(ENGINES)('the send doing jobs $engine has not started', ({ native }) => {
  const modules = native ? 'file:///nonexistent/' : MODULES;
  const a = blocks(3, 64 * 1024);
  const file = join(work, 'bad-copy');
  beforeAll(() => writeFileSync(file, new Uint8Array(a.length))); // no copy matches: every job ends in its fallback, here or after the worker

  it('every job is done once, by the worker or in line, and a failure comes out in job order', async () => {
    const pool = new BufferPool(1 << 20, 2, { shared: true });
    const out = pool.take();
    const fill = new DataFill({ path: file, arena: pool.arena!, modules, native });
    const done: number[] = [];
    try {
      const rooms = Array.from({ length: 12 }, (_, i) => out.subarray(i * a.length, (i + 1) * a.length));
      for (const [i, r] of rooms.entries()) await fill.post(r, a.length, [0n], sumsOf(a), async () => { done.push(i); r.set(a); });
      await fill.settle();
      expect(done.sort((x, y) => x - y)).toEqual(rooms.map((_, i) => i));
      for (const r of rooms) expect(Buffer.compare(r, a)).toBe(0);
      // the later job is taken first (the last not started), yet the earlier one's error is the one thrown
      await fill.post(rooms[0]!, a.length, [0n], sumsOf(a), async () => { throw new Error('first'); });
      await fill.post(rooms[1]!, a.length, [0n], sumsOf(a), async () => { throw new Error('second'); });
      await expect(fill.settle()).rejects.toThrow('first');
    } finally {
      fill.close();
    }
  });
});

describe('the data-fill worker unavailable', () => {
  /** 40 jobs posted to a DataFill made by `make` over a fresh arena: how many its fallbacks did. */
  async function redoneOf(make: (arena: SharedArrayBuffer) => DataFill): Promise<number> {
    const pool = new BufferPool(1 << 20, 1, { shared: true });
    const out = pool.take();
    const fill = make(pool.arena!);
    let redone = 0;
    try {
      for (let i = 0; i < 40; i++) await fill.post(out.subarray(i * 8192, i * 8192 + 8192), 8192, [0n], new Uint8Array(8), async () => { redone++; });
      await fill.settle();
    } finally {
      fill.close();
    }
    return redone;
  }

  it('a worker whose modules do not load leaves every job to its fallback', async () => {
    expect(await redoneOf((arena) => new DataFill({ path: join(work, 'nothing'), arena, modules: 'file:///nonexistent/', native: false }))).toBe(40);
  });
  it('a thread started early that cannot load is ready (failed) at once, and its jobs go to their fallbacks', async () => {
    const thread = new FillThread('file:///nonexistent/');
    for (let i = 0; !thread.ready; i++) {
      expect(i).toBeLessThan(500);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await redoneOf((arena) => new DataFill({ path: join(work, 'nothing'), arena, thread }))).toBe(40);
  });
});

describe.skipIf(!built)('btrfs-ts send reading data behind it', () => {
  const img = join(work, 'dup.img');
  /** Physical offsets of the copies of each data extent of the subvolume (plain ones first). */
  let extents: { compressed: boolean; copies: bigint[] }[] = [];

  beforeAll(async () => {
    const root = join(work, 'root');
    mkdirSync(join(root, 'sv', 'd'), { recursive: true });
    // plain (random) files of several WRITE pieces, with tails; compressible ones (zstd extents); small ones
    for (let i = 0; i < 6; i++) writeFileSync(join(root, 'sv', 'd', `r${i}`), Buffer.from(blocks(i, 300_000 + i * 4096 + i * 11)).map((x, k) => x ^ ((k * k * 2654435761) >>> 24)));
    for (let i = 0; i < 6; i++) writeFileSync(join(root, 'sv', `t${i}`), 'line of text '.repeat(40_000 + i * 1000));
    for (let i = 0; i < 20; i++) writeFileSync(join(root, 'sv', `s${i}`), `small ${i}\n`.repeat(i * 50 + 1));
    const r = spawnSync('node', [BIN, 'mkfs', '-q', '-d', 'dup', '--compress', 'zstd', '--subvol', 'ro:sv', '-r', root, img], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    extents = await dataExtents(img);
    expect(extents.filter((e) => e.compressed).length).toBeGreaterThan(5);
    expect(extents.filter((e) => !e.compressed).length).toBeGreaterThan(5);
    for (const e of extents) expect(e.copies.length).toBe(2);
  }, 60_000);

  async function dataExtents(path: string): Promise<{ compressed: boolean; copies: bigint[] }[]> {
    const src = await openImageFile(path);
    try {
      const image = await BtrfsImage.open(src);
      const sv = await image.subvolumeByPath('sv');
      const tree = await image.reader.tree(sv.id);
      const out: { compressed: boolean; copies: bigint[] }[] = [];
      const from = { objectid: 256n, type: 0, offset: 0n };
      const to = { objectid: 1n << 40n, type: 255, offset: 0n };
      for await (const it of image.reader.trees.iterate(tree, from, to)) {
        if (it.key.type !== BTRFS_EXTENT_DATA_KEY) continue;
        const fe = decodeFileExtentItem(it.data);
        if (fe.type !== BTRFS_FILE_EXTENT_REG || fe.disk_bytenr === 0n) continue;
        out.push({ compressed: fe.compression !== BTRFS_COMPRESS_NONE, copies: image.reader.chunks.map(fe.disk_bytenr, 4096, 'test') });
      }
      return out.sort((x, y) => Number(x.compressed) - Number(y.compressed));
    } finally {
      await src.close();
    }
  }

  /** The library's send, without the worker (no shared pool). */
  async function inLine(path: string, args: string[]): Promise<Buffer | Error> {
    const src = await openImageFile(path, { blocking: true });
    try {
      const image = await BtrfsImage.open(src);
      const compressedData = args.includes('--compressed-data');
      return Buffer.concat(await collect(sendSubvolume(image, 'sv', { compressedData, ...(args.includes('--proto') ? { proto: 2 } : {}) })));
    } catch (e) {
      return e as Error;
    } finally {
      await src.close();
    }
  }

  /** The CLI's send; `worker`: its data read behind on the JavaScript worker even where the addon has its thread. */
  function cli(path: string, args: string[], worker = false): { status: number | null; stderr: string; out: Buffer | undefined } {
    const out = join(work, 'out.stream');
    rmSync(out, { force: true });
    const env = { ...process.env, ...(worker ? { BTRFS_TS_FILL: 'worker' } : {}) };
    const r = spawnSync('node', [BIN, 'send', '-q', ...args, '-f', out, path, 'sv'], { encoding: 'utf8', env });
    return { status: r.status, stderr: r.stderr, out: existsSync(out) ? readFileSync(out) : undefined };
  }

  function flip(path: string, at: bigint): void {
    const fd = openSync(path, 'r+');
    const b = new Uint8Array(1);
    try {
      readSync(fd, b, 0, 1, Number(at));
      b[0]! ^= 0x40;
      writeSync(fd, b, 0, 1, Number(at));
    } finally {
      closeSync(fd);
    }
  }

  const CASES = [['--compressed-data'], ['--proto', '2'], []];
  /** The engines the CLI is run with: its default (the addon's thread where there is one), and the worker. */
  const WORKER = NativeFill.available ? [false, true] : [false];

  it('the same stream as the send without it, protocol 1 and 2, --compressed-data', async () => {
    for (const worker of WORKER) {
      for (const args of CASES) {
        const r = cli(img, args, worker);
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        expect(r.out!.equals(await inLine(img, args) as Buffer), `${args.join(' ')} worker ${worker}`).toBe(true);
      }
    }
  });

  it('a zstd frame of several blocks whose second block header lies past the first sector: planned on its real bytes (ENCODED_WRITE, as in line)', async () => {
    // 128 KiB of content in two blocks: 6000 raw bytes, then an RLE block for the rest (RFC 8878 3.1.1)
    const raw = blocks(9, 6000);
    const content = 128 * 1024;
    const hdr = [0x28, 0xb5, 0x2f, 0xfd, 0xa0, ...[0, 8, 0, 0].map((_, i) => (content >>> (8 * i)) & 0xff)]; // single segment, 4-byte content size
    const bh = (last: number, type: number, size: number) => { const v = (size << 3) | (type << 1) | last; return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff]; };
    const frame = Uint8Array.from([...hdr, ...bh(0, 0, raw.length), ...raw, ...bh(1, 1, content - raw.length), 0x61]);
    expect(frame.length).toBeGreaterThan(4096 + 3);
    const te = new TextEncoder();
    const stream = encodeAll(2, [
      { cmd: C.BTRFS_SEND_C_SUBVOL, path: te.encode('sv'), uuid: new Uint8Array(16).fill(7), ctransid: 9n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: te.encode('f'), ino: 257n },
      { cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: te.encode('f'), fileOffset: 0n, unencodedFileLen: BigInt(content), unencodedLen: BigInt(content), unencodedOffset: 0n, compression: 2, data: frame },
      { cmd: C.BTRFS_SEND_C_END },
    ]);
    const streamFile = join(work, 'multiblock.stream');
    const mimg = join(work, 'multiblock.img');
    writeFileSync(streamFile, stream);
    const rr = spawnSync('node', [BIN, 'receive', '-q', '-f', streamFile, mimg], { encoding: 'utf8' });
    expect(rr.status, rr.stderr).toBe(0);
    const want = await inLine(mimg, ['--compressed-data']);
    expect(want).toBeInstanceOf(Buffer);
    const r = cli(mimg, ['--compressed-data']);
    expect(r.stderr).toBe('');
    expect(r.out!.equals(want as Buffer)).toBe(true);
    const dump = spawnSync('node', [BIN, 'dump', '-f', join(work, 'out.stream')], { encoding: 'utf8' });
    expect(dump.stdout).toMatch(/encoded_write +\.\/sv\/f +offset=0 len=8192, unencoded_file_len=131072, unencoded_len=131072, unencoded_offset=0, compression=2,/);
  });

  it('a damaged first copy (DUP): the second is sent, the same stream', async () => {
    const damaged = join(work, 'first.img');
    copyFileSync(img, damaged);
    for (const e of extents) flip(damaged, e.copies[0]! + 100n);
    for (const worker of WORKER) {
      for (const args of CASES) {
        const r = cli(damaged, args, worker);
        expect(r.stderr).toBe('');
        expect(r.out!.equals(await inLine(img, args) as Buffer), `${args.join(' ')} worker ${worker}`).toBe(true);
      }
    }
  });

  it('no good copy: the error of the send without it, one line, no output file', async () => {
    for (const which of [false, true]) {
      const damaged = join(work, `both-${which}.img`);
      copyFileSync(img, damaged);
      const e = extents.find((x) => x.compressed === which)!;
      for (const c of e.copies) flip(damaged, c + 5000n);
      for (const args of CASES) {
        const want = await inLine(damaged, args);
        expect(want).toBeInstanceOf(Error);
        expect((want as Error).message).toMatch(/data checksum mismatch at logical \d+/);
        for (const worker of WORKER) {
          const r = cli(damaged, args, worker);
          expect(r.status).toBe(1);
          expect(r.stderr.trim().split('\n')).toEqual([expect.stringContaining((want as Error).message)]);
          expect(r.out).toBeUndefined();
        }
      }
    }
  });
});

describe.skipIf(built)('data read behind the send on a worker thread', () => {
  it('needs a build', () => skipReason('send-data-fill', 'run `npx tsc -p .` first (the worker imports dist/)'));
});
