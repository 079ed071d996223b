import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { concatBytes } from '../src/util/bytes.js';
import { BTRFS_COMPRESS_ZSTD } from '../src/compress/index.js';
import * as C from '../src/stream/constants.js';
import type { SendCommand } from '../src/stream/types.js';
import { expectCheckClean } from './helpers/receive-check.js';

/**
 * A receive from a stream file (read through mappings, io/mapped-input.ts) writes the encoded extents it
 * stores as they came from the file itself, with copy_file_range on the image writer's thread
 * (io/file-range.ts, write-behind.ts OP_COPY), instead of from a copy in the ring. The thread starts only
 * past 8 MiB written, so the stream first writes 9 MiB of plain data. Oracle: each file's sha256 computed
 * here, in the image's manifest, for the receive through the mappings (copies from the file), through
 * read(2) (BTRFS_TS_MMAP=off: copies into the ring) and without the addon (BTRFS_TS_NATIVE=off); the
 * images' checksums against their data with btrfs check --check-data-csum where btrfs-progs is installed.
 */
const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'btrfs-ts.js');
const built = existsSync(join(ROOT, 'dist', 'cli', 'main.js'));
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-copy-range-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
beforeAll(() => lib.initCodecs());

const enc = (s: string) => new TextEncoder().encode(s);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) out[i] = (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) >>> 24;
  return out;
}

function text(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let o = 0, i = 0; o < n; i++) {
    const l = enc(`file ${seed} line ${i}: compressible text for an encoded extent\n`);
    out.set(l.subarray(0, Math.min(l.length, n - o)), o);
    o += l.length;
  }
  return out;
}

describe.skipIf(!built)('encoded extents copied from the stream file into the image', () => {
  const files = new Map<string, Uint8Array>();
  const stream = join(work, 'enc.stream');

  beforeAll(() => {
    const cmds: SendCommand[] = [{ cmd: C.BTRFS_SEND_C_SUBVOL, path: enc('sv'), uuid: new Uint8Array(16).fill(5), ctransid: 3n }];
    // 9 MiB of plain data first: the writer thread starts past 8 MiB
    const plain = noise(9 << 20, 1);
    cmds.push({ cmd: C.BTRFS_SEND_C_MKFILE, path: enc('plain'), ino: 257n });
    for (let o = 0; o < plain.length; o += 1 << 20) cmds.push({ cmd: C.BTRFS_SEND_C_WRITE, path: enc('plain'), fileOffset: BigInt(o), data: plain.subarray(o, o + (1 << 20)) });
    files.set('plain', plain);
    for (let f = 0; f < 6; f++) {
      const name = `z${f}`;
      const size = 128 * 1024 * 5 + 20_000 + f * 1000;
      const content = text(size, f);
      cmds.push({ cmd: C.BTRFS_SEND_C_MKFILE, path: enc(name), ino: BigInt(258 + f) });
      for (let o = 0; o < size; o += 128 * 1024) {
        const piece = content.subarray(o, Math.min(size, o + 128 * 1024));
        // the kernel compresses whole pages: the last one with zeros past the end of the file
        const pages = new Uint8Array(Math.ceil(piece.length / 4096) * 4096);
        pages.set(piece);
        const z = lib.compressExtent(BTRFS_COMPRESS_ZSTD, pages, 4096)!;
        expect(z, 'compressible').not.toBeNull();
        // as the kernel sends them, the frame padded to whole sectors (the bytes on disk) — and for odd
        // files the frame alone, which the receive pads in memory (not a view of the file: no copy)
        const data = f % 2 === 0 ? new Uint8Array(Math.ceil(z.length / 4096) * 4096) : z;
        if (data !== z) data.set(z);
        cmds.push({
          cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: enc(name), fileOffset: BigInt(o), unencodedFileLen: BigInt(piece.length),
          unencodedLen: BigInt(pages.length), unencodedOffset: 0n, compression: 2, data,
        });
      }
      files.set(name, content);
    }
    cmds.push({ cmd: C.BTRFS_SEND_C_END });
    writeFileSync(stream, concatBytes([lib.encodeStreamHeader(2), ...cmds.map((c) => lib.encodeCommand(c, 2))]));
  });

  async function manifest(img: string): Promise<Map<string, string>> {
    await using r = await lib.openImage(img);
    const out = new Map<string, string>();
    for await (const l of lib.formatManifest(lib.imageTreeSource(r.image, await r.image.resolve('sv')))) {
      const m = /^(\S+) file .*sha256=([0-9a-f]+)/.exec(l);
      if (m) out.set(m[1]!, m[2]!);
    }
    return out;
  }

  for (const [how, env] of [['through the mappings', {}], ['through read(2)', { BTRFS_TS_MMAP: 'off' }], ['without the addon', { BTRFS_TS_NATIVE: 'off' }]] as const) {
    it(`every file holds its bytes (${how})`, async () => {
      const img = join(work, `${how.replace(/\W+/g, '-')}.img`);
      const r = spawnSync('node', [BIN, 'receive', '-q', '-f', stream, img], { encoding: 'utf8', env: { ...process.env, ...env } });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const got = await manifest(img);
      expect([...got.keys()].sort()).toEqual([...files.keys()].sort());
      for (const [name, content] of files) expect(got.get(name), name).toBe(sha(content));
      expectCheckClean(img, 'receive-copy-range');
    }, 60_000);
  }
});
