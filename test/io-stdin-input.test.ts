import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { skipReason } from './helpers/oracle.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * stdin as a pipe or socket is read into the parser's window through one reused buffer, stdin redirected
 * from a file by read(2) into it (io/stdin-input.ts).
 * Oracle: `dump -f FILE` of the same stream. The bytes arrive whole, byte by byte, in odd slices with
 * pauses between them (every read of the window then gets fewer bytes than it asked for), through a
 * socket (node's stdio pipes) and through a real pipe (sh's |); cut short, the error is the file's.
 */
const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const built = existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'));

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** Runs `btrfs-ts ARGS` with `bytes` written to its stdin in the slices `cut` picks. */
async function fed(args: string[], bytes: Uint8Array, cut: (left: number) => number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn('node', [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  child.stdin.on('error', () => undefined); // a reader that stops early (an error) closes the pipe
  let at = 0;
  let n = 0;
  while (at < bytes.length && child.exitCode === null) {
    const k = Math.max(1, Math.min(bytes.length - at, cut(bytes.length - at)));
    if (!child.stdin.write(bytes.subarray(at, at + k))) await new Promise((r) => child.stdin.once('drain', r));
    at += k;
    // a pause now and then: the reader finds the pipe empty and waits
    if (++n % 7 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  child.stdin.end();
  return { status: await exited, stdout, stderr };
}

function dumpOfFile(path: string): string {
  const r = spawnSync('node', [BIN, 'dump', '-f', path], { encoding: 'latin1' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

describe.skipIf(!built)('stdin as a pipe or a file: the window reader', () => {
  const streams = ['full-v1.stream', 'multi-v1.stream', 'incr-zstd-v2.stream'];
  for (const name of streams) {
    const path = join(STREAMS_DIR, name);
    it(`${name}: whole, in odd slices and byte by byte (first 3000 bytes) gives the dump of the file`, async () => {
      const bytes = readFileSync(path);
      const want = dumpOfFile(path);
      const rand = rng(name.length);
      const whole = await fed(['dump'], bytes, (left) => left);
      expect(whole.stderr).toBe('');
      expect(whole.stdout).toBe(want);
      const odd = await fed(['dump'], bytes, () => 1 + Math.floor(rand() * 9000));
      expect(odd.stdout).toBe(want);
      const bytewise = await fed(['dump'], bytes, (left) => (bytes.length - left < 3000 ? 1 : 100_000));
      expect(bytewise.stdout).toBe(want);
      expect(bytewise.status).toBe(0);
    });
  }

  it('through a real pipe (sh: cat | btrfs-ts dump), and zstd-compressed through one', () => {
    const path = join(STREAMS_DIR, 'full-v1.stream');
    const want = dumpOfFile(path);
    const plain = spawnSync('sh', ['-c', `cat "$1" | node "$2" dump`, 'sh', path, BIN], { encoding: 'latin1' });
    expect(plain.stderr).toBe('');
    expect(plain.stdout).toBe(want);
    const hasZstd = spawnSync('zstd', ['--version']).status === 0;
    if (!hasZstd) {
      skipReason('pipe zstd', 'zstd program missing: the compressed half was not checked');
      return;
    }
    const packed = spawnSync('sh', ['-c', `zstd -q -c "$1" | node "$2" dump`, 'sh', path, BIN], { encoding: 'latin1' });
    expect(packed.stderr).toBe('');
    expect(packed.stdout).toBe(want);
  });

  it('stdin redirected from a file (< FILE, also compressed) gives the dump of the file', () => {
    const path = join(STREAMS_DIR, 'incr-zstd-v2.stream');
    const want = dumpOfFile(path);
    const fd = openSync(path, 'r');
    const r = spawnSync('node', [BIN, 'dump'], { stdio: [fd, 'pipe', 'pipe'], encoding: 'latin1' });
    closeSync(fd);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(want);
    const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-stdin-'));
    const gz = join(dir, 's.gz');
    writeFileSync(gz, gzipSync(readFileSync(path)));
    const gzfd = openSync(gz, 'r');
    const z = spawnSync('node', [BIN, 'dump'], { stdio: [gzfd, 'pipe', 'pipe'], encoding: 'latin1' });
    closeSync(gzfd);
    rmSync(dir, { recursive: true, force: true });
    expect(z.stderr).toBe('');
    expect(z.stdout).toBe(want);
  });

  it('Ctrl-C while a receive waits for more of a zstd-compressed pipe: status 130, INTERRUPTED', async () => {
    const z = spawnSync('zstd', ['-q', '-c', join(STREAMS_DIR, 'full-v1.stream')]);
    if (z.status !== 0) {
      skipReason('stdin zstd interrupt', 'zstd program missing');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-stdin-'));
    const child = spawn('node', [BIN, 'receive', '-q', join(dir, 'img')], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    child.stdin.write(z.stdout.subarray(0, 3000));
    // the image appears once the CLI is set up and waits on the pipe
    for (let i = 0; i < 200 && !existsSync(join(dir, 'img')); i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    child.stdin.destroy();
    rmSync(dir, { recursive: true, force: true });
    expect(stderr).toMatch(/^btrfs-ts: ERROR: stopped by SIGINT.*\[INTERRUPTED\]\n$/);
  });

  it('cut short: the same one-line error as the file cut at the same byte', async () => {
    const bytes = readFileSync(join(STREAMS_DIR, 'full-v1.stream')).subarray(0, 300_001);
    const piped = await fed(['dump'], bytes, () => 4093);
    expect(piped.status).toBe(1);
    expect(piped.stderr).toMatch(/^btrfs-ts: ERROR: .*\n$/);
    const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-pipe-'));
    const cut = join(dir, 'cut.stream');
    writeFileSync(cut, bytes);
    const file = spawnSync('node', [BIN, 'dump', '-f', cut], { encoding: 'latin1' });
    rmSync(dir, { recursive: true, force: true });
    expect(file.status).toBe(1);
    expect(piped.stderr).toBe(file.stderr);
    expect(piped.stdout).toBe(file.stdout);
  });
});

describe.skipIf(!built)('-f naming a pipe, a FIFO or /dev/stdin: read in order, as stdin is', () => {
  // every command that takes -f read at offsets and failed there with ESPIPE ("invalid seek")
  const path = join(STREAMS_DIR, 'incr-zstd-v2.stream');
  const bash = (script: string) => spawnSync('bash', ['-c', script, 'bash', path, BIN], { encoding: 'latin1' });

  it('dump -f <(cat STREAM), -f <(gzip -c STREAM) and -f /dev/stdin on a pipe give the dump of the file', () => {
    const want = dumpOfFile(path);
    for (const script of ['node "$2" dump -f <(cat "$1")', 'node "$2" dump -f <(gzip -c "$1")', 'cat "$1" | node "$2" dump -f /dev/stdin']) {
      const r = bash(script);
      expect(r.stderr, script).toBe('');
      expect(r.stdout, script).toBe(want);
    }
  });

  it('receive and verify through a named FIFO (a zstd-compressed stream in it too): as from the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-fifo-'));
    try {
      const fifo = join(dir, 'fifo');
      const full = join(STREAMS_DIR, 'full-v1.stream');
      const img = join(dir, 'img');
      const viaFifo = (writer: string, args: string[]) =>
        spawnSync('bash', ['-c', `mkfifo "$1" && (${writer} > "$1" &) && node "$2" "\${@:3}"; s=$?; rm -f "$1"; exit $s`, 'bash', fifo, BIN, ...args], { encoding: 'latin1' });
      const recv = viaFifo(`cat "${full}"`, ['receive', '-q', '-f', fifo, img]);
      expect(recv.stderr).toBe('');
      expect(recv.status).toBe(0);
      const ls = spawnSync('node', [BIN, 'subvolume', 'list', img], { encoding: 'latin1' });
      expect(ls.stdout).toMatch(/ path full\n$/);
      const hasZstd = spawnSync('zstd', ['--version']).status === 0;
      if (!hasZstd) return skipReason('fifo zstd', 'zstd program missing: the compressed FIFO was not checked');
      const verify = viaFifo(`zstd -q -c "${path}"`, ['verify', '-f', fifo]);
      const fromFile = spawnSync('node', [BIN, 'verify', '-f', path], { encoding: 'latin1' });
      expect(verify.stderr).toBe('');
      expect(verify.stdout).toBe(fromFile.stdout);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(built)('stdin as a pipe or a file', () => {
  it('needs a build', () => skipReason('io-stdin-input', 'run `npx tsc -p .` first (bin/btrfs-ts.js needs dist/)'));
});
