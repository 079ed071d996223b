// Oracle: extents the running Linux kernel wrote to a real btrfs (test/fixtures/compress/capture.sh).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { CodecError } from '../src/errors.js';
import {
  btrfsLzoCompress,
  checkEncodedExtent,
  compressExtent,
  decodeExtent,
  decompressExtent,
  diskToEncoded,
  initCodecs,
  lzo1xDecompress,
  zstdFrameInfo,
  zstdWindowOk,
  type BtrfsCompressType,
} from '../src/compress/index.js';

const DIR = join(__dirname, 'fixtures/compress');
interface Rec {
  fixture?: string; path: string; fileOffset: number; compression: number; diskNumBytes: number;
  ramBytes: number; plainFile: string; plainBytes: number; sha256: string; skipped?: string;
}
const manifest = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8')) as { sectorsize: number; kernel: string; extents: Rec[] };
const SS = manifest.sectorsize;
const extents = manifest.extents.filter((r) => r.fixture);
const plainCache = new Map<string, Uint8Array>();
function plainOf(name: string): Uint8Array {
  let p = plainCache.get(name);
  if (!p) plainCache.set(name, (p = new Uint8Array(gunzipSync(readFileSync(join(DIR, name))))));
  return p;
}
const disk = (r: Rec) => new Uint8Array(readFileSync(join(DIR, r.fixture!)));
const plainRange = (r: Rec) => plainOf(r.plainFile).subarray(r.fileOffset, r.fileOffset + r.plainBytes);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const le32 = (b: Uint8Array, p: number) => (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;

beforeAll(() => initCodecs());

describe('kernel-written fixtures', () => {
  it('covers every codec with several extents, including a partial last sector', () => {
    for (const t of [1, 2, 3]) expect(extents.filter((r) => r.compression === t).length).toBeGreaterThanOrEqual(4);
    expect(extents.some((r) => r.plainBytes % SS !== 0)).toBe(true);
    expect(extents.some((r) => r.ramBytes === 131072)).toBe(true);
  });

  for (const r of extents) {
    it(`${r.fixture} decodes to the original bytes`, () => {
      const data = disk(r);
      expect(data.length).toBe(r.diskNumBytes);
      const { out, decodedLen } = decodeExtent(r.compression, data, r.ramBytes, SS);
      expect(out.length).toBe(r.ramBytes);
      expect(decodedLen).toBe(r.plainBytes);
      expect(sha(out)).toBe(r.sha256);
      expect(Buffer.from(out.subarray(0, r.plainBytes)).equals(Buffer.from(plainRange(r)))).toBe(true);
      // The same bytes arrive as ENCODED_WRITE data; nothing should stop passing them through.
      const chk = checkEncodedExtent({
        compression: diskToEncoded(r.compression, SS), data, unencodedLen: r.ramBytes,
        unencodedFileLen: r.plainBytes, unencodedOffset: 0, sectorsize: SS,
      });
      expect(chk.passThroughProblems).toEqual([]);
      expect(chk.decodedLen).toBe(r.plainBytes);
    });

    it(`${r.fixture} is rejected when ramBytes is too small to hold it`, () => {
      expect(() => decompressExtent(r.compression as BtrfsCompressType, disk(r), r.plainBytes - 1, SS)).toThrow(CodecError);
    });
  }

  it('LZO: our compressor reproduces the kernel extents byte for byte (framing, segments, padding)', () => {
    for (const r of extents.filter((e) => e.compression === 2)) {
      const data = disk(r);
      const total = le32(data, 0);
      const ours = btrfsLzoCompress(plainRange(r), SS);
      expect(ours, r.fixture).not.toBeNull();
      expect(ours!.length).toBe(total);
      expect(Buffer.from(ours!).equals(Buffer.from(data.subarray(0, total)))).toBe(true);
      expect(data.subarray(total).every((b) => b === 0)).toBe(true);
    }
  });

  it('LZO: kernel segments follow the framing rules (one sector each, headers never straddle)', () => {
    for (const r of extents.filter((e) => e.compression === 2)) {
      const data = disk(r);
      const total = le32(data, 0);
      let cur = 4;
      let segs = 0;
      let out = 0;
      while (cur < total) {
        expect(Math.floor(cur / SS)).toBe(Math.floor((cur + 3) / SS));
        const len = le32(data, cur);
        const seg = lzo1xDecompress(data.subarray(cur + 4, cur + 4 + len), SS);
        const expectLen = Math.min(SS, r.plainBytes - out);
        expect(seg.length).toBe(expectLen);
        out += seg.length;
        cur += 4 + len;
        segs++;
        const left = SS - (cur % SS);
        if (left < 4) {
          expect(data.subarray(cur, cur + left).every((b) => b === 0)).toBe(true);
          cur += left;
        }
      }
      expect(cur).toBe(total);
      expect(segs).toBe(Math.ceil(r.plainBytes / SS));
    }
  });

  it('zstd: frame info of kernel frames (single segment, content size, window within 2^17, zero padding)', () => {
    for (const r of extents.filter((e) => e.compression === 3)) {
      const data = disk(r);
      const info = zstdFrameInfo(data);
      expect(info.contentSize).toBe(r.plainBytes);
      expect(info.windowSize).toBeLessThanOrEqual(131072);
      expect(info.dictId).toBe(0);
      expect(zstdWindowOk(info)).toBe(true);
      expect(info.frameLen).toBeGreaterThan(r.diskNumBytes - SS);
      expect(info.frameLen).toBeLessThanOrEqual(r.diskNumBytes);
      expect(data.subarray(info.frameLen).every((b) => b === 0)).toBe(true);
      expect(zstdFrameInfo(data.subarray(0, info.frameLen)).frameLen).toBe(info.frameLen);
    }
  });

  it('zstd: a frame claiming a 256 KiB window is flagged as not kernel-decodable', () => {
    const r = extents.find((e) => e.compression === 3)!;
    const info = zstdFrameInfo(disk(r));
    expect(zstdWindowOk({ ...info, windowSize: 1 << 18 })).toBe(false);
  });

  it('zlib: kernel extents are a zlib stream followed only by zero padding', () => {
    for (const r of extents.filter((e) => e.compression === 1)) {
      const data = disk(r);
      expect(data[0]! & 0x0f).toBe(8);
      expect(((data[0]! << 8) | data[1]!) % 31).toBe(0);
    }
  });

  it('our compressExtent agrees with the kernel on what is worth compressing', () => {
    const byPath = new Map(manifest.extents.map((r) => [r.path, r]));
    for (const [path, r] of byPath) {
      const codec = ({ zlib: 1, lzo: 2, zstd: 3 } as const)[path.split('/')[0] as 'zlib' | 'lzo' | 'zstd'];
      const name = path.split('/')[1]!;
      const plain = plainOf(`plain-${name}.gz`).subarray(r.fileOffset, r.fileOffset + Math.min(131072, r.ramBytes || 131072));
      const ours = compressExtent(codec, plain, SS);
      if (r.fixture) {
        expect(ours, path).not.toBeNull();
        // Round trip through our own decoder.
        expect(Buffer.from(decompressExtent(codec, ours!, plain.length, SS)).equals(Buffer.from(plain))).toBe(true);
      } else if (codec === 2 || name === 'random') {
        // The kernel stored these uncompressed; LZO's give-up rules are the kernel's, and random data
        // is incompressible for every codec.
        expect(ours, path).toBeNull();
      }
    }
  });
});
