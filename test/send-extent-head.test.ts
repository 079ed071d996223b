import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CodecError } from '../src/errors.js';
import { zstdFrameInfo, zstdHeadersWithin } from '../src/compress/zstd.js';
import { readHead } from '../src/send/extent-head.js';
import type { ExtentRef } from '../src/send/extent-data.js';
import { loadCsum } from '../src/image/structs/csum.js';
import { crc32cBtrfs, crc32cEngine } from '../src/util/crc32c.js';
import { nativeAddon } from '../src/util/native-addon.js';

/**
 * The first sector of a compressed extent read, checked and its zstd frame walked in one addon call
 * (native/extent-head.c, send/extent-head.ts readHead). Oracle: the JavaScript way — zstdHeadersWithin and
 * zstdFrameInfo on the same bytes, firstBadSector's verdict — on random frames (any header bit, window,
 * dictionary and content size fields, blocks of every type and size, a checksum, truncations), each
 * written into a file at an offset.
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-head-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const SECTOR = 4096;

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** An extent's stored bytes (whole sectors) starting with a frame whose header fields and blocks are random. */
function randomExtent(r: () => number): Uint8Array {
  const int = (n: number): number => Math.floor(r() * n);
  const out = new Uint8Array(SECTOR * (1 + int(3)));
  for (let i = 0; i < out.length; i++) out[i] = int(256);
  const magic = r() < 0.03 ? 0x12345678 : 0xfd2fb528;
  new DataView(out.buffer).setUint32(0, magic, true);
  // frame header descriptor: content size flag, single segment, reserved bit (rarely), checksum, dictionary id size
  const fcsFlag = int(4);
  const single = r() < 0.6 ? 0x20 : 0;
  out[4] = (fcsFlag << 6) | single | (r() < 0.03 ? 0x08 : 0) | (r() < 0.3 ? 0x04 : 0) | (r() < 0.8 ? 0 : int(4));
  if (!single) out[5] = r() < 0.7 ? (7 - int(4)) << 3 | int(8) : int(256); // windows around 128 KiB, or any
  // content sizes mostly small (single-segment frames take their window from it)
  const dictSize = [0, 1, 2, 4][out[4]! & 3]!;
  const fcsAt = 5 + (single ? 0 : 1) + dictSize;
  const fcsSize = fcsFlag === 0 ? (single ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
  if (fcsSize >= 4 && r() < 0.8) for (let i = 2; i < fcsSize; i++) out[fcsAt + i] = 0;
  let p = fcsAt + fcsSize;
  const blocks = 1 + int(4);
  for (let b = 0; b < blocks && p + 3 <= out.length; b++) {
    const type = r() < 0.03 ? 3 : int(3);
    const size = r() < 0.1 ? int(1 << 21) : int(type === 1 ? 200_000 : 3000);
    const bh = (b === blocks - 1 ? 1 : 0) | (type << 1) | (size << 3);
    out[p] = bh & 0xff;
    out[p + 1] = (bh >> 8) & 0xff;
    out[p + 2] = (bh >> 16) & 0xff;
    p += 3 + (type === 1 ? 1 : size);
  }
  return out;
}

/** What the JavaScript says of the first sector's frame: its info where every header lies in the sector, else undefined. */
function jsFrame(data: Uint8Array): ReturnType<typeof zstdFrameInfo> | undefined {
  if (!zstdHeadersWithin(data, SECTOR)) return undefined;
  try {
    return zstdFrameInfo(data);
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    return undefined;
  }
}

const addon = crc32cEngine === 'addon' ? nativeAddon?.extentHead : undefined;

describe.skipIf(!addon)('extentHead (native/extent-head.c)', () => {
  it('reads, checks and walks as the JavaScript does: a frame it walks equals zstdFrameInfo, one it leaves is left whole to it', () => {
    const file = join(work, 'frames');
    const fd = openSync(file, 'w+');
    const r = rng(15);
    const out = new Float64Array(8);
    const room = new Uint8Array(SECTOR);
    let walked = 0;
    let left = 0;
    try {
      for (let i = 0; i < 3000; i++) {
        const ext = randomExtent(r);
        const at = 8192 * i + (i % 2) * SECTOR;
        writeSync(fd, ext, 0, ext.length, at);
        const sum = new Uint8Array(4);
        new DataView(sum.buffer).setUint32(0, crc32cBtrfs(ext.subarray(0, SECTOR)), true);
        const got = addon!(fd, at, room, sum, ext.length, true, out);
        expect(Buffer.compare(room, ext.subarray(0, SECTOR))).toBe(0);
        const want = jsFrame(ext);
        const fcs8 = ext[4]! >> 6 === 3;
        if (want && !fcs8) {
          expect(got).toBe(1);
          expect([out[0], out[1], out[2], Number.isNaN(out[3]) ? undefined : out[3], out[4] === 1, out[5] === 1, out[6], out[7]])
            .toEqual([want.frameLen, want.headerLen, want.windowSize, want.contentSize, want.singleSegment, want.hasChecksum, want.dictId, want.blockCount]);
          walked++;
        } else {
          expect(got).toBe(2);
          left++;
        }
        // not zstd: checked, not walked
        expect(addon!(fd, at, room, sum, ext.length, false, out)).toBe(1);
        // a checksum that does not match
        sum[0] ^= 1;
        expect(addon!(fd, at, room, sum, ext.length, true, out)).toBe(0);
      }
      // past the end of the file: zeros, as readFullAt reads them
      const sum = new Uint8Array(4);
      new DataView(sum.buffer).setUint32(0, crc32cBtrfs(new Uint8Array(SECTOR)), true);
      expect(addon!(fd, 8192 * 4000, room, sum, SECTOR, false, out)).toBe(1);
      expect(room.every((b) => b === 0)).toBe(true);
      expect(addon!(-1, 0, room, sum, SECTOR, false, out)).toBe(-1);
    } finally {
      closeSync(fd);
    }
    // both kinds met often enough to mean something
    expect(walked).toBeGreaterThan(300);
    expect(left).toBeGreaterThan(300);
  });
});

describe('readHead (send/extent-head.ts)', () => {
  it("gives the JavaScript way's verdict with the addon and without it (no descriptor), and the frame where the addon walked it", async () => {
    await loadCsum(0);
    const file = join(work, 'heads');
    const fd = openSync(file, 'w+');
    const r = rng(16);
    try {
      for (let i = 0; i < 400; i++) {
        const ext = randomExtent(r);
        writeSync(fd, ext, 0, ext.length, 8192 * i);
        const sums = new Uint8Array(4);
        new DataView(sums.buffer).setUint32(0, crc32cBtrfs(ext.subarray(0, SECTOR)), true);
        if (i % 7 === 0) sums[1] ^= 1;
        const src = { read: async (o: bigint, n: number) => ext.slice(Number(o) - 8192 * i, Number(o) - 8192 * i + n) };
        const x = (withFd: boolean): ExtentRef => ({ img: { src: { ...src, ...(withFd ? { fd } : {}) }, sectorsize: SECTOR, superblock: { csum_type: 0 } } } as unknown as ExtentRef);
        const s = { sums, have: new Uint8Array(1).fill(1) };
        const [a, b] = [new Uint8Array(ext.length), new Uint8Array(ext.length)];
        const viaAddon = await readHead(x(true), BigInt(8192 * i), a, ext.length, s, true);
        const viaJs = await readHead(x(false), BigInt(8192 * i), b, ext.length, s, true);
        expect(Boolean(viaAddon)).toBe(Boolean(viaJs));
        expect(viaAddon).toBe(i % 7 === 0 ? false : viaAddon); // a bad first sector: read in line
        if (viaAddon && viaAddon.frame) expect(viaAddon.frame).toEqual(zstdFrameInfo(ext));
        // a frame the JavaScript walks whole within the sector came walked (bar 8-byte content sizes)
        if (viaAddon && addon && ext[4]! >> 6 !== 3) expect(viaAddon.frame).toEqual(jsFrame(ext));
        if (viaJs) expect(viaJs.frame).toBeUndefined();
      }
    } finally {
      closeSync(fd);
    }
  });
});
