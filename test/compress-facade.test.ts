// Facade rules: code mappings, give-up decisions, encoded-write checks, hand-built zstd frames.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BTRFS_COMPRESS_LZO,
  BTRFS_COMPRESS_ZLIB,
  BTRFS_COMPRESS_ZSTD,
  btrfsLzoCompress,
  checkEncodedExtent,
  compressExtent,
  decodeExtent,
  diskToEncoded,
  encodedToDisk,
  initCodecs,
  zstdDecoder,
  zstdFrameInfo,
  zstdWindowOk,
} from '../src/compress/index.js';
import { zstdHeadersWithin } from '../src/compress/zstd.js';
import { CodecError } from '../src/errors.js';

const DIR = join(__dirname, 'fixtures/compress');
const text = new Uint8Array(gunzipSync(readFileSync(join(DIR, 'plain-text128k.gz'))));
const random = new Uint8Array(gunzipSync(readFileSync(join(DIR, 'plain-random.gz'))));

/** A valid zstd frame made of raw blocks, with a chosen window descriptor and optional checksum flag. */
function rawFrame(payload: Uint8Array, windowLog: number, blockSize = payload.length): Uint8Array {
  const parts: number[] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, (windowLog - 10) << 3];
  for (let p = 0; p < payload.length || p === 0; p += blockSize) {
    const n = Math.min(blockSize, payload.length - p);
    const last = p + n >= payload.length ? 1 : 0;
    const h = (n << 3) | last; // type 0 = raw
    parts.push(h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff);
    for (const b of payload.subarray(p, p + n)) parts.push(b); // no spread: blocks up to 128 KiB
    if (payload.length === 0) break;
  }
  return Uint8Array.from(parts);
}

beforeAll(() => initCodecs());

describe('compression codes', () => {
  it('maps encoded-I/O codes to on-disk types and back', () => {
    expect(encodedToDisk(1)).toEqual({ type: BTRFS_COMPRESS_ZLIB });
    expect(encodedToDisk(2)).toEqual({ type: BTRFS_COMPRESS_ZSTD });
    expect([3, 4, 5, 6, 7].map((c) => encodedToDisk(c).lzoSectorSize)).toEqual([4096, 8192, 16384, 32768, 65536]);
    for (const c of [0, 8, -1, 255]) expect(() => encodedToDisk(c)).toThrow(CodecError);
    expect(diskToEncoded(BTRFS_COMPRESS_LZO, 16384)).toBe(5);
    expect(diskToEncoded(BTRFS_COMPRESS_ZSTD, 4096)).toBe(2);
    expect(() => diskToEncoded(0, 4096)).toThrow(CodecError);
    expect(() => diskToEncoded(BTRFS_COMPRESS_LZO, 3000)).toThrow(CodecError);
  });

  it('initCodecs is idempotent', async () => {
    await Promise.all([initCodecs(), initCodecs()]);
  });
});

describe('compressExtent', () => {
  it('returns null for incompressible data and empty input, for every codec', () => {
    for (const t of [1, 2, 3] as const) {
      expect(compressExtent(t, random, 4096)).toBeNull();
      expect(compressExtent(t, new Uint8Array(0), 4096)).toBeNull();
      // 4 KiB can never free a sector.
      expect(compressExtent(t, new Uint8Array(4096), 4096)).toBeNull();
      expect(compressExtent(t, new Uint8Array(8192), 4096)).not.toBeNull();
    }
  });

  it('refuses more than 128 KiB and bad levels', () => {
    expect(() => compressExtent(1, new Uint8Array(131073), 4096)).toThrow(CodecError);
    expect(() => compressExtent(1, text, 4096, 10)).toThrow(CodecError);
    expect(() => compressExtent(3, text, 4096, 16)).toThrow(CodecError);
  });

  it('higher levels compress text at least as well, and every level round-trips', () => {
    const sizes = [1, 3, 9].map((l) => compressExtent(1, text, 4096, l)!.length);
    expect(sizes[2]!).toBeLessThanOrEqual(sizes[0]!);
    for (const l of [-15, -1, 1, 3, 15]) {
      const c = compressExtent(3, text, 4096, l)!;
      expect(zstdWindowOk(zstdFrameInfo(c))).toBe(true);
      expect(Buffer.from(decodeExtent(3, c, text.length, 4096).out).equals(Buffer.from(text))).toBe(true);
    }
  });

  it('LZO follows the requested sector size', () => {
    const c16 = btrfsLzoCompress(text, 16384)!;
    expect(Buffer.from(decodeExtent(2, c16, text.length, 16384).out).equals(Buffer.from(text))).toBe(true);
    // Framed for 16K sectors, it is not the same byte stream as 4K framing.
    expect(Buffer.from(c16).equals(Buffer.from(btrfsLzoCompress(text, 4096)!))).toBe(false);
  });
});

describe('zstdFrameInfo / hand-built frames', () => {
  it('parses a multi-block raw frame with a 1 MiB window: decodes, but is not kernel-decodable', () => {
    const payload = text.subarray(0, 50_000);
    const f = rawFrame(payload, 20, 20_000);
    const padded = new Uint8Array(f.length + 3000);
    padded.set(f);
    const info = zstdFrameInfo(padded);
    expect(info).toMatchObject({ frameLen: f.length, windowSize: 1 << 20, singleSegment: false, blockCount: 3, dictId: 0 });
    expect(info.contentSize).toBeUndefined();
    expect(zstdWindowOk(info)).toBe(false);
    const { out, decodedLen } = decodeExtent(3, padded, 65536, 4096);
    expect(decodedLen).toBe(50_000);
    expect(Buffer.from(out.subarray(0, 50_000)).equals(Buffer.from(payload))).toBe(true);
    const chk = checkEncodedExtent({ compression: 2, data: padded, unencodedLen: 65536, unencodedFileLen: 50_000, unencodedOffset: 0, sectorsize: 4096 });
    expect(chk.passThroughProblems.join()).toMatch(/window/);
  });

  it('rejects bad magic, reserved bits, truncated blocks and oversize blocks', () => {
    const good = rawFrame(text.subarray(0, 1000), 17);
    const bad = (mut: (b: Uint8Array) => Uint8Array) => () => zstdFrameInfo(mut(good.slice()));
    expect(bad((b) => ((b[0] = 0), b))).toThrow(CodecError);
    expect(bad((b) => ((b[4] = b[4]! | 0x08), b))).toThrow(CodecError);
    expect(bad((b) => b.subarray(0, b.length - 1))).toThrow(CodecError);
    expect(() => zstdFrameInfo(rawFrame(text.subarray(0, 5000), 12))).toThrow(/exceeds the maximum/);
  });
});

describe('zstdHeadersWithin: whether the first bytes decide the frame walk', () => {
  it('true when every block header is in them (whatever follows), false when one lies past them', () => {
    const one = rawFrame(text.subarray(0, 30_000), 17); // one block: its header is at byte 6
    const three = rawFrame(text.subarray(0, 30_000), 17, 10_000); // the second header at 6 + 3 + 10000
    expect(zstdHeadersWithin(one, 4096)).toBe(true);
    expect(zstdHeadersWithin(three, 4096)).toBe(false);
    expect(zstdHeadersWithin(three, three.length)).toBe(true);
    expect(zstdHeadersWithin(three, 10_009)).toBe(false);
    expect(zstdHeadersWithin(three, 10_012)).toBe(false); // the third header still past it
    // a frame bad within the first bytes: decided there (the walk fails the same on the whole frame)
    const bad = one.slice();
    bad[4] = bad[4]! | 0x08;
    expect(zstdHeadersWithin(bad, 4096)).toBe(true);
    expect(zstdHeadersWithin(one, 10)).toBe(false);
  });
});

describe('decoding into a caller buffer (the send path)', () => {
  const SS = 4096;
  const garbage = (n: number) => new Uint8Array(n).fill(0xa5);

  it('zstd goes through libzstd (our addon) or the wasm exports directly, and into a buffer gives the bytes of a fresh decode', () => {
    // test/compress-zstd-native.test.ts checks which one and compares the two
    expect(['native', 'direct']).toContain(zstdDecoder());
    const c = compressExtent(BTRFS_COMPRESS_ZSTD, text.subarray(0, 100_000), SS)!;
    const fresh = decodeExtent(3, c, 131072, SS);
    const into = garbage(200_000);
    const got = decodeExtent(3, c, 131072, SS, into);
    expect(got.decodedLen).toBe(100_000);
    expect(got.out.buffer).toBe(into.buffer); // a view, no new array
    expect(got.out.length).toBe(131072);
    expect(Buffer.from(got.out).equals(Buffer.from(fresh.out))).toBe(true);
    expect(got.out.subarray(100_000).every((b) => b === 0)).toBe(true); // the garbage past the data is zeroed
  });

  it('LZO into a buffer: same bytes, tail zeroed', () => {
    const c = compressExtent(BTRFS_COMPRESS_LZO, text.subarray(0, 70_000), SS)!;
    const into = garbage(131072);
    const got = decodeExtent(2, c, 81920, SS, into);
    expect(got.out.buffer).toBe(into.buffer);
    expect(Buffer.from(got.out.subarray(0, 70_000)).equals(Buffer.from(text.subarray(0, 70_000)))).toBe(true);
    expect(got.out.subarray(70_000).every((b) => b === 0)).toBe(true);
  });

  it('a buffer too small is not used: a new array comes back', () => {
    const c = compressExtent(BTRFS_COMPRESS_ZSTD, text.subarray(0, 100_000), SS)!;
    const small = garbage(4096);
    const got = decodeExtent(3, c, 131072, SS, small);
    expect(got.out.buffer).not.toBe(small.buffer);
    expect(Buffer.from(got.out.subarray(0, 100_000)).equals(Buffer.from(text.subarray(0, 100_000)))).toBe(true);
  });

  it('a frame without a content size that decodes past ramBytes is a one-line CodecError, into a buffer or not', () => {
    const f = rawFrame(text.subarray(0, 50_000), 17, 20_000);
    expect(zstdFrameInfo(f).contentSize).toBeUndefined();
    for (const into of [undefined, garbage(131072)]) {
      let err: unknown;
      try {
        decodeExtent(3, f, 40_960, SS, into);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CodecError);
      expect((err as Error).message).toMatch(/^zstd: .*more than 40960 bytes$/);
    }
  });

  it('a frame bigger than the direct decoder takes (1.5 MiB) still decodes, through the library', () => {
    const payload = new Uint8Array(1_500_000);
    for (let i = 0; i < payload.length; i += text.length) payload.set(text.subarray(0, Math.min(text.length, payload.length - i)), i);
    const f = rawFrame(payload, 21, 131072);
    const { out, decodedLen } = decodeExtent(3, f, 1_500_000, SS, garbage(1_600_000));
    expect(decodedLen).toBe(1_500_000);
    expect(Buffer.from(out).equals(Buffer.from(payload))).toBe(true);
  });
});

describe('checkEncodedExtent', () => {
  const c = compressExtent(BTRFS_COMPRESS_LZO, text, 4096)!;
  const args = { compression: 3, data: c, unencodedLen: text.length, unencodedFileLen: text.length, unencodedOffset: 0, sectorsize: 4096 };

  it('accepts kernel-compatible data and returns the decoded extent', () => {
    const r = checkEncodedExtent(args);
    expect(r.passThroughProblems).toEqual([]);
    expect(r.diskType).toBe(2);
    expect(r.lzoSectorSize).toBe(4096);
    expect(r.decodedLen).toBe(text.length);
    expect(r.shortForFileRange).toBe(false);
  });

  it('flags an LZO sector size that differs from the image', () => {
    expect(checkEncodedExtent({ ...args, sectorsize: 16384 }).passThroughProblems.join()).toMatch(/LZO framed for 4096/);
  });

  it('throws on inconsistent lengths and on encryption', () => {
    expect(() => checkEncodedExtent({ ...args, unencodedOffset: 4096 })).toThrow(CodecError);
    expect(() => checkEncodedExtent({ ...args, unencodedFileLen: text.length + 1 })).toThrow(CodecError);
    expect(() => checkEncodedExtent({ ...args, encryption: 1 })).toThrow(CodecError);
  });

  it('reports a short decode relative to the file range, and rejects decoding past unencoded_len', () => {
    const half = compressExtent(BTRFS_COMPRESS_ZLIB, text.subarray(0, 60_000), 4096)!;
    const r = checkEncodedExtent({ ...args, compression: 1, data: half, unencodedLen: 65536, unencodedFileLen: 65536 });
    expect(r.decodedLen).toBe(60_000);
    expect(r.shortForFileRange).toBe(true);
    expect(r.decoded.subarray(60_000).every((b) => b === 0)).toBe(true);
    expect(() => checkEncodedExtent({ ...args, compression: 1, data: half, unencodedLen: 59_999, unencodedFileLen: 4096 })).toThrow(
      expect.objectContaining({ code: 'DECODED_TOO_LONG' }),
    );
  });
});
