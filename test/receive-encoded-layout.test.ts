import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { BTRFS_COMPRESS_ZSTD } from '../src/compress/index.js';
import * as C from '../src/stream/constants.js';
import type { SendCommand } from '../src/stream/types.js';
import { expectCheckClean, receiveManifest } from './helpers/receive-check.js';

/**
 * Encoded extents stored as they came (FileWriter.passThrough) into a file whose extents are in every
 * state the write path tells apart: inline data at 0 to be converted first, appends after the last extent
 * (one search, no cutting), an overwrite of part of an earlier extent, and a hole left between. Oracle:
 * the file's bytes computed here, against the received image's manifest; btrfs check --check-data-csum
 * where btrfs-progs is installed.
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-encoded-layout-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
beforeAll(() => lib.initCodecs());

const enc = (s: string) => new TextEncoder().encode(s);
const K = 1024;
/** Compressible bytes that differ per seed: text lines with the seed and the line number. */
function text(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const line = (i: number) => enc(`seed ${seed} line ${i} of compressible text\n`);
  for (let o = 0, i = 0; o < n; i++) {
    const l = line(i);
    out.set(l.subarray(0, Math.min(l.length, n - o)), o);
    o += l.length;
  }
  return out;
}

describe('encoded extents passed through into a file in every extent state', () => {
  it('the file holds exactly the bytes written: inline converted, appended, overwritten, a hole between', async () => {
    const file = new Uint8Array(640 * K);
    let size = 0;
    const cmds: SendCommand[] = [
      { cmd: C.BTRFS_SEND_C_SUBVOL, path: enc('sv'), uuid: new Uint8Array(16).fill(3), ctransid: 5n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: enc('f'), ino: 257n },
    ];
    const write = (offset: number, data: Uint8Array): void => {
      cmds.push({ cmd: C.BTRFS_SEND_C_WRITE, path: enc('f'), fileOffset: BigInt(offset), data });
      file.set(data, offset);
      size = Math.max(size, offset + data.length);
    };
    const encoded = (offset: number, plain: Uint8Array): void => {
      const z = lib.compressExtent(BTRFS_COMPRESS_ZSTD, plain, 4096);
      expect(z, 'compressible').not.toBeNull();
      cmds.push({
        cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: enc('f'), fileOffset: BigInt(offset), unencodedFileLen: BigInt(plain.length),
        unencodedLen: BigInt(plain.length), unencodedOffset: 0n, compression: 2, data: z!,
      });
      file.set(plain, offset);
      size = Math.max(size, offset + plain.length);
    };
    write(0, text(300, 1)); // a small file: inline
    encoded(4 * K, text(128 * K, 2)); // the inline extent becomes a regular first sector first
    encoded(132 * K, text(128 * K, 3)); // appended after the last extent
    encoded(68 * K, text(128 * K, 4)); // cuts the two before it
    encoded(384 * K, text(64 * K, 5)); // a hole between
    cmds.push({ cmd: C.BTRFS_SEND_C_END });
    const img = join(work, 'a.img');
    const lines = await receiveManifest(img, cmds, 'sv');
    const all = file.subarray(0, size);
    const line = lines.find((l) => l.startsWith('f file '));
    expect(line).toContain(` size=${size} `);
    expect(line).toContain(`sha256=${createHash('sha256').update(all).digest('hex')}`);
    expectCheckClean(img, 'receive-encoded-layout');
  });
});
