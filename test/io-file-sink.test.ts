import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SendError } from '../src/errors.js';
import { FileSink } from '../src/io/file-sink.js';
import { DataFill } from '../src/send/data-fill.js';
import { NativeFill } from '../src/send/data-fill-native.js';
import { BufferPool } from '../src/util/bytes.js';
import { bytes, countingWriteBehind } from './helpers/write-behind.js';
import { tmpDir } from './image-write-helpers.js';

// Oracle: the file read back with fs.readFileSync after close, against the buffers concatenated in the
// order they were handed over.
const work = tmpDir('btrfs-ts-sink-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('send output file written behind (FileSink)', () => {
  it('writes every buffer in order with a queue smaller than one buffer, larger than several, and gives pool buffers back', async () => {
    for (const limit of [1, 5000, 1 << 20]) {
      const path = join(work, `out-${limit}.bin`);
      const pool = new BufferPool(4096, 64);
      const sink = await FileSink.open(path, pool, limit);
      expect(sink.regular).toBe(true);
      const parts: Uint8Array[] = [];
      for (let i = 0; i < 200; i++) {
        // pool buffers (whole or a prefix, as the encoder hands them) and odd-sized ones of other origins
        const b = i % 3 === 0 ? bytes(1 + ((i * 7919) % 9000), i) : pool.take().subarray(0, i % 2 ? 4096 : 1 + i * 13);
        if (i % 3 !== 0) b.set(bytes(b.length, i));
        parts.push(b.slice());
        await sink.write(b);
      }
      await sink.write(new Uint8Array(0));
      await sink.close();
      expect(Buffer.from(readFileSync(path)).equals(Buffer.concat(parts))).toBe(true);
      // every pool buffer came back once written (the pool keeps up to 64)
      const back = new Set<ArrayBufferLike>();
      for (let i = 0; i < 64; i++) back.add(pool.take().buffer);
      expect(back.size).toBe(64);
    }
  });

  it.skipIf(!existsSync('/dev/full'))('a failed write is thrown at the next write or at close, as SEND_WRITE naming the byte, and stays thrown', async () => {
    // /dev/full fails every write with ENOSPC
    const sink = await FileSink.open('/dev/full', undefined, 1);
    expect(sink.regular).toBe(false);
    await sink.write(bytes(1000, 1));
    let err: unknown;
    try {
      for (let i = 0; i < 10; i++) await sink.write(bytes(1000, i));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SendError);
    expect((err as SendError).code).toBe('SEND_WRITE');
    expect((err as SendError).describe()).toMatch(/^at byte 0, path "\/dev\/full": cannot write the stream: ENOSPC.* \[SEND_WRITE\]$/);
    await expect(sink.write(bytes(10, 2))).rejects.toBe(err);
    await expect(sink.close()).rejects.toBe(err);
  });

  it.skipIf(!existsSync('/dev/full'))('a failure while only close is left is thrown by close', async () => {
    const sink = await FileSink.open('/dev/full');
    await sink.write(bytes(4096, 3));
    await expect(sink.close()).rejects.toThrow(/cannot write the stream: ENOSPC/);
  });
});

// A regular file that fills up: a tmpfs of 64 KiB, which only root can mount.
const tmpfsWhy = process.getuid?.() !== 0 ? 'not root: cannot mount a small tmpfs' : undefined;
if (tmpfsWhy) console.warn(`SKIP full regular file test: ${tmpfsWhy}`);
/** Who writes: libuv's pool, or the addon's data-fill thread (FileSink's WriteBehind, send/data-fill.ts). */
const WRITERS = [{ writer: 'the pool', behind: false }, { writer: 'the data-fill thread', behind: true }].filter((w) => !w.behind || NativeFill.available);

describe.skipIf(!!tmpfsWhy).each(WRITERS)('a regular output file that fills up (writes out at once, each at its offset; $writer)', ({ behind }) => {
  it('throws SEND_WRITE naming the first byte that could not be written, the bytes before it in place', async () => {
    const dir = join(work, 'full');
    mkdirSync(dir, { recursive: true });
    spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    // the thread's buffers: an arena of 16 KiB ones; its image file (nothing is read from it here)
    const pool = behind ? new BufferPool(16 << 10, 8, { shared: true }) : undefined;
    writeFileSync(join(work, 'image'), new Uint8Array(4096));
    const fill = pool && new DataFill({ path: join(work, 'image'), arena: pool.arena!, take: false });
    const writer = fill && countingWriteBehind(fill);
    try {
      const path = join(dir, 'out.stream');
      // a 64 KiB queue: four writes out at once; 16 KiB pieces, 40 of them: far past the tmpfs's 64 KiB
      const sink = await FileSink.open(path, pool, 64 << 10, writer);
      expect(sink.regular).toBe(true);
      const parts: Uint8Array[] = [];
      let err: unknown;
      try {
        for (let i = 0; i < 40; i++) {
          const b = pool ? pool.take() : new Uint8Array(16 << 10);
          b.set(bytes(16 << 10, i));
          parts.push(b.slice());
          await sink.write(b);
        }
      } catch (e) {
        err = e;
      }
      const closed = await sink.close().then(() => undefined, (e: unknown) => e);
      err ??= closed;
      expect(err).toBeInstanceOf(SendError);
      const e = err as SendError;
      expect(e.code).toBe('SEND_WRITE');
      expect(e.describe()).toMatch(/cannot write the stream: ENOSPC/);
      // the thread's failed write was done again in line, which found the error
      if (writer) expect(writer.inLine).toBeGreaterThan(0);
      // the file holds every byte before the one named, as handed over
      const at = Number(e.offset);
      const got = readFileSync(path);
      expect(at).toBeGreaterThan(0);
      expect(at).toBeLessThanOrEqual(64 << 10);
      expect(got.length).toBeGreaterThanOrEqual(at);
      expect(Buffer.compare(got.subarray(0, at), Buffer.concat(parts).subarray(0, at))).toBe(0);
      if (closed !== undefined) expect(closed).toBe(err);
      await expect(sink.write(bytes(10, 2))).rejects.toBe(err);
    } finally {
      fill?.close();
      spawnSync('umount', [dir]);
    }
  });
});

describe('send -f to an output that fails', () => {
  const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
  it.skipIf(!existsSync('/dev/full'))('ends with one line and exit 1 while compressed extents are out on the reading thread', () => {
    // a protocol-1 send of compressed files: its reading thread holds extents ahead when the first write
    // fails; the process once stayed alive after printing the error
    const root = join(work, 'root');
    mkdirSync(join(root, 'sv'), { recursive: true });
    let x = 7;
    for (let i = 0; i < 24; i++) {
      const text = new Uint8Array(256 * 1024);
      for (let j = 0; j < text.length; j++) text[j] = 97 + ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) >>> 29);
      writeFileSync(join(root, 'sv', `f${i}`), text);
    }
    const image = join(work, 'comp.img');
    const mk = spawnSync('node', [BIN, 'mkfs', '-q', '--compress', 'zstd', '--subvol', 'ro:sv', '-r', root, image], { encoding: 'utf8' });
    expect(mk.stderr).toBe('');
    const r = spawnSync('node', [BIN, 'send', '-q', '-f', '/dev/full', image, 'sv'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal).toBe(null);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^btrfs-ts: ERROR: at byte 0, path "\/dev\/full": cannot write the stream: ENOSPC.* \[SEND_WRITE\]$/)]);
  });
});

describe('send to stdout: written behind on the pool at stdout\'s own offset (FileSink.stdout)', () => {
  const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
  const built = existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'));
  it.skipIf(!built)('through a pipe, redirected and appended: the bytes of send -f; a reader that stops early ends it quietly', () => {
    const root = join(work, 'stdout-root');
    mkdirSync(join(root, 'sv'), { recursive: true });
    // more than the 8 MiB queued behind the writes: the producer waits for the pipe's reader
    for (let i = 0; i < 12; i++) writeFileSync(join(root, 'sv', `f${i}`), bytes(1 << 20, i));
    const image = join(work, 'stdout.img');
    const mk = spawnSync('node', [BIN, 'mkfs', '-q', '--subvol', 'ro:sv', '-r', root, image], { encoding: 'utf8' });
    expect(mk.stderr).toBe('');
    const want = join(work, 'want.stream');
    expect(spawnSync('node', [BIN, 'send', '-q', '-f', want, image, 'sv']).status).toBe(0);
    const wantBytes = readFileSync(want);
    expect(wantBytes.length).toBeGreaterThan(12 << 20);
    const piped = join(work, 'piped.stream');
    const p = spawnSync('bash', ['-c', 'node "$1" send -q "$2" sv | cat > "$3"; echo "${PIPESTATUS[0]}"', 'bash', BIN, image, piped], { encoding: 'utf8' });
    expect(p.stdout.trim()).toBe('0');
    expect(Buffer.compare(readFileSync(piped), wantBytes)).toBe(0);
    const appended = join(work, 'appended.stream');
    writeFileSync(appended, 'head\n');
    const a = spawnSync('bash', ['-c', 'node "$1" send -q "$2" sv >> "$3"', 'bash', BIN, image, appended], { encoding: 'utf8' });
    expect(a.status).toBe(0);
    expect(Buffer.compare(readFileSync(appended), Buffer.concat([Buffer.from('head\n'), wantBytes]))).toBe(0);
    const h = spawnSync('bash', ['-c', 'node "$1" send -q "$2" sv | head -c 100 | wc -c; echo "${PIPESTATUS[0]}"', 'bash', BIN, image], { encoding: 'utf8' });
    expect(h.stdout.trim().split(/\s+/)).toEqual(['100', '0']);
    expect(h.stderr).toBe('');
  });
});
