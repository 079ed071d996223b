import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as C from '../src/stream/constants.js';
import type { SendCommand } from '../src/stream/types.js';
import { concatBytes } from '../src/util/bytes.js';
import { expectCheckClean, receiveManifest } from './helpers/receive-check.js';

/**
 * Gathered writes of several large files interleaved: a range of 1 MiB or more settles by keeping its
 * gather buffer (gather-writer.ts, SWAP_MIN) and past three such ranges the oldest is written out early;
 * ranges come back to gathering, are appended to after being written out, and are truncated while held.
 * Oracle: each file's sha256 and size computed here from the bytes the stream writes, against the
 * received image's manifest; btrfs check --check-data-csum where btrfs-progs is installed.
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-gather-swap-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const enc = (s: string) => new TextEncoder().encode(s);
/** Deterministic bytes that do not repeat with any small period (xorshift). */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

describe('gathered writes of interleaved large files', () => {
  it('every file holds exactly the bytes written (held, flushed early, appended, truncated)', async () => {
    await interleaved(600 * 1024, 'a.img');
  });

  // 30 MiB: past the first 8 MiB the image's write-behind thread writes extents of 1 MiB or more straight
  // from the gather buffers (lent, not copied): a buffer must not be gathered into again while it is written
  it('the same with pieces of 1.6 MiB, most extents written from lent gather buffers', async () => {
    await interleaved(1600 * 1024, 'b.img');
  });
});

async function interleaved(PIECE: number, name: string): Promise<void> {
  {
    const FILES = 6;
    const files: Uint8Array[][] = Array.from({ length: FILES }, () => []);
    const cmds: SendCommand[] = [{ cmd: C.BTRFS_SEND_C_SUBVOL, path: enc('sv'), uuid: new Uint8Array(16).fill(7), ctransid: 5n }];
    for (let i = 0; i < FILES; i++) cmds.push({ cmd: C.BTRFS_SEND_C_MKFILE, path: enc(`f${i}`), ino: BigInt(257 + i) });
    const sizes = new Array<number>(FILES).fill(0);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < FILES; i++) {
        // the last round ends each file mid-sector
        const data = bytes(round === 2 ? PIECE + 123 * (i + 1) : PIECE, 100 * round + i + 1);
        cmds.push({ cmd: C.BTRFS_SEND_C_WRITE, path: enc(`f${i}`), fileOffset: BigInt(sizes[i]!), data });
        files[i]!.push(data);
        sizes[i]! += data.length;
      }
      if (round === 1) {
        // f4 is held (settled with 1.2 MiB) when it is cut: mid-sector, inside its gathered range
        const cut = 2 * PIECE - 5000;
        cmds.push({ cmd: C.BTRFS_SEND_C_TRUNCATE, path: enc('f4'), size: BigInt(cut) });
        files[4] = [concatBytes(files[4]!).subarray(0, cut)];
        sizes[4] = cut;
      }
    }
    cmds.push({ cmd: C.BTRFS_SEND_C_END });
    const img = join(work, name);
    const lines = await receiveManifest(img, cmds, 'sv');
    for (let i = 0; i < FILES; i++) {
      const all = concatBytes(files[i]!);
      const sha = createHash('sha256').update(all).digest('hex');
      const line = lines.find((l) => l.startsWith(`f${i} file `));
      expect(line, `f${i}`).toContain(` size=${all.length} `);
      expect(line, `f${i}`).toContain(`sha256=${sha}`);
    }
    expectCheckClean(img, 'receive-gather-swap');
  }
}
