import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { BtrfsTsError } from '../src/errors.js';
import { detectCompression } from '../src/io/compression-magic.js';
import { openInput } from '../src/io/input.js';
import { hasTool, skipReason } from './helpers/oracle.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * Send streams stored compressed (zstd, gzip, xz — as backup tools keep them) are read directly by every
 * command that takes a stream, from a file or from stdin: the bytes that come out are the stream's.
 */
const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const built = existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'));
const STREAM = join(STREAMS_DIR, 'full-v2.stream');
const plain = readFileSync(STREAM);
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-compressed-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const tools = { zstd: hasTool('zstd', ['-V']), xz: hasTool('xz', ['-V']) };
function compressed(kind: 'zstd' | 'gzip' | 'xz'): string | undefined {
  const file = join(work, `s.${kind}`);
  if (existsSync(file)) return file;
  if (kind === 'gzip') writeFileSync(file, gzipSync(plain));
  else if (!tools[kind]) return undefined;
  else writeFileSync(file, spawnSync(kind, ['-c'], { input: plain, maxBuffer: 1 << 26 }).stdout);
  return file;
}

async function readAll(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of src) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe('compressed stream files', () => {
  it('the magic bytes tell the formats apart; a send stream is none of them', () => {
    expect(detectCompression(plain.subarray(0, 6))).toBeUndefined();
    expect(detectCompression(gzipSync(plain).subarray(0, 6))).toBe('gzip');
    expect(detectCompression(Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]))).toBe('zstd');
    expect(detectCompression(Uint8Array.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0]))).toBe('xz');
  });

  it.each(['zstd', 'gzip', 'xz'] as const)('%s: openInput gives the stream\'s bytes', async (kind) => {
    const file = compressed(kind);
    if (!file) {
      skipReason(`input-compressed ${kind}`, `no ${kind} program to make the test file`);
      return;
    }
    expect((await readAll(await openInput(file))).equals(plain)).toBe(true);
  });

  it.each(['zstd', 'gzip', 'xz'] as const)('%s: a truncated file is a diagnosed error naming it', async (kind) => {
    const file = compressed(kind);
    if (!file) {
      skipReason(`input-compressed ${kind}`, `no ${kind} program to make the test file`);
      return;
    }
    const cut = join(work, `cut.${kind}`);
    writeFileSync(cut, readFileSync(file).subarray(0, 20000));
    const err = await readAll(await openInput(cut)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BtrfsTsError);
    expect((err as BtrfsTsError).code).toBe('INPUT_DECOMPRESS');
    expect((err as Error).message).toContain(cut);
  });

  const cli = (args: string[], input?: Buffer, env?: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, [BIN, ...args], { input, env: env ?? process.env, maxBuffer: 1 << 28 });
  let expectedDump: Buffer | undefined;
  // one command per format besides dump, so each runs at least once on each format without 15 CLI runs
  const other = { zstd: ['verify'], gzip: ['plan', '--summary'], xz: ['verify'] };

  it.skipIf(!built).each(['zstd', 'gzip', 'xz'] as const)('CLI %s: dump -f and dump < stdin print the plain stream\'s dump; verify/plan accept it', (kind) => {
    const file = compressed(kind);
    if (!file) {
      skipReason(`input-compressed CLI ${kind}`, `no ${kind} program`);
      return;
    }
    expectedDump ??= cli(['dump', '-f', STREAM]).stdout;
    expect(cli(['dump', '-f', file]).stdout.equals(expectedDump), `dump -f ${kind}`).toBe(true);
    expect(cli(['dump'], readFileSync(file)).stdout.equals(expectedDump), `dump < ${kind}`).toBe(true);
    const r = cli([...other[kind], '-f', file]);
    expect(r.status, r.stderr.toString()).toBe(0);
  });

  it.skipIf(!built)('CLI: receive from an xz file and replay of a gzip file give the kernel\'s tree; without the xz program, one line', () => {
    const xz = compressed('xz');
    if (!xz) {
      skipReason('input-compressed CLI receive', 'no xz program');
      return;
    }
    const img = join(work, 'x.img');
    const r = cli(['receive', '-q', '-f', xz, img]);
    expect(r.status, r.stderr.toString()).toBe(0);
    const m = cli(['manifest', img, '--path', 'full', '--expect', join(STREAMS_DIR, 'full-v2.manifest')]);
    expect(m.status, m.stdout.toString()).toBe(0);
    // replay (CI) reads a stored compressed capture the same way
    const rep = cli(['replay', '-f', compressed('gzip')!, '--expect', join(STREAMS_DIR, 'full-v2.manifest')]);
    expect(rep.status, rep.stdout.toString() + rep.stderr.toString()).toBe(0);
    const noXz = cli(['dump', '-f', xz], undefined, { ...process.env, PATH: join(work, 'no-such-dir') });
    expect(noXz.status).toBe(1);
    expect(noXz.stderr.toString()).toMatch(/^btrfs-ts: ERROR: .*s\.xz is xz-compressed and the xz program is not installed: install xz or decompress the file first \[INPUT_DECOMPRESS\]\n$/);
  });
});
