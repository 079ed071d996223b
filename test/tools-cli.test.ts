import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { STREAMS_DIR } from './helpers/streams.js';

/** The commands as a user runs them: exit codes, error lines, files written. */
const cli = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const built = existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'commands', 'convert.js'));
const run = (...args: string[]) => spawnSync('node', [cli, ...args]);
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-toolscli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('stream tools CLI', () => {
  if (!built) {
    it('needs a build', () => console.warn('SKIP tools-cli: run `npx tsc -p .` first (bin/btrfs-ts.js needs dist/)'));
    return;
  }
  it('extract-stream: a chain in one run, a missing parent is a diagnosed error', () => {
    const dir = join(work, 'x');
    const ok = run('extract-stream', '-f', join(STREAMS_DIR, 'zstd-v2.stream'), '-f', join(STREAMS_DIR, 'incr-zstd-v2.stream'), dir);
    expect(ok.stderr.toString()).toMatch(/extracted 2 subvolume\(s\) \(zstd, zstd-incr\)/);
    expect(ok.status).toBe(0);
    expect(existsSync(join(dir, 'zstd-incr', 'new.log'))).toBe(true);
    const bad = run('extract-stream', '-f', join(STREAMS_DIR, 'incr-v1.stream'), join(work, 'y'));
    expect(bad.status).toBe(1);
    expect(bad.stderr.toString()).toMatch(/^btrfs-ts: ERROR: at byte 17, command #0, BTRFS_SEND_C_SNAPSHOT.*cannot find the parent subvolume/);
  });

  it('convert writes a stream that verify accepts; bad options are usage errors', () => {
    const out = join(work, 'c.stream');
    const r = run('convert', '-f', join(STREAMS_DIR, 'full-v1.stream'), '-o', out, '--compress', 'zstd:3');
    expect(r.status).toBe(0);
    expect(r.stderr.toString()).toMatch(/converted 448 commands into \d+ \(\d+ encoded writes\)/);
    expect(readFileSync(out).readUInt32LE(13)).toBe(2);
    const v = run('verify', '-f', out);
    expect(v.status).toBe(0);
    expect(v.stdout.toString()).toMatch(/codecs: +zstd=\d+/);
    expect(run('convert', '-f', join(STREAMS_DIR, 'full-v1.stream'), '-o', out, '--proto', '3').status).toBe(2);
    expect(run('convert', '-f', join(STREAMS_DIR, 'full-v1.stream'), '-o', out, '--parent-uuid', 'xyz').status).toBe(2);
    const refused = run('convert', '-f', join(STREAMS_DIR, 'full-v1.stream'), '-o', out, '--parent-uuid', '00112233445566778899aabbccddeeff');
    expect(refused.status).toBe(1);
    expect(refused.stderr.toString()).toMatch(/CONVERT_NOT_INCREMENTAL/);
    expect(existsSync(out)).toBe(false); // no half-written output left behind
  });
});

describe('extract -f forwards to extract-stream', () => {
  it('`extract -f STREAM DIR` materializes the stream; `extract IMAGE` without DIR is a usage error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-extract-f-'));
    try {
      const r = spawnSync('node', [cli, 'extract', '-f', join(STREAMS_DIR, 'sample.stream'), join(dir, 'out')], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      const m = spawnSync('node', [cli, 'manifest', join(dir, 'out', 'sample'), '--expect', join(STREAMS_DIR, 'sample.manifest')], { encoding: 'utf8' });
      expect(m.status).toBe(0);
      const bad = spawnSync('node', [cli, 'extract', join(dir, 'nothing.img')], { encoding: 'utf8' });
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/missing destination directory/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
