// zstd through libzstd (our native addon, src/util/native-addon.ts), which replaces the WebAssembly decoder
// where it loads. Oracles: the plain files the kernel's compressed extents hold (test/fixtures/compress,
// written by the kernel), the bytes we compressed, and the WebAssembly decoder's error codes and messages.
// Where the addon was not built, or libzstd.so.1 is missing, the native half says so and is skipped.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';
import { checkAddonZstd, initZstd, zstdCompress, zstdDecoder, zstdDecompressExtent } from '../src/compress/zstd.js';
import { CodecError } from '../src/errors.js';
import { NATIVE_ADDON_PATH, nativeAddon } from '../src/util/native-addon.js';

const DIR = join(__dirname, 'fixtures/compress');
const plain = (f: string): Uint8Array => new Uint8Array(gunzipSync(readFileSync(join(DIR, f))));
const text = plain('plain-text128k.gz');

await initZstd();

const addonBuilt = existsSync(NATIVE_ADDON_PATH) && process.env['BTRFS_TS_NATIVE'] !== 'off';
/** Whether the addon reaches a libzstd.so.1 here (it throws ZSTD_UNAVAILABLE when there is none). */
let libzstd = false;
try {
  libzstd = nativeAddon?.zstdDecompress?.(zstdCompress(text.subarray(0, 1000), 3), new Uint8Array(1000)) === 1000;
} catch {
  libzstd = false;
}

describe('which zstd decoder', () => {
  it('is libzstd through the addon where both are there, else the wasm exports', () => {
    if (!addonBuilt || !libzstd) console.log(`zstd: ${addonBuilt ? 'libzstd.so.1 not found' : `no addon at ${NATIVE_ADDON_PATH}`}: the native decoder is not tested here`);
    expect(zstdDecoder()).toBe(addonBuilt && libzstd ? 'native' : 'direct');
  });

  it('takes the addon only when it decodes the probe frame exactly and refuses a truncated one, and not under BTRFS_TS_ZSTD=wasm', () => {
    expect(checkAddonZstd(undefined)).toBeUndefined();
    expect(checkAddonZstd({})).toBeUndefined();
    const want = new TextEncoder().encode('btrfs-ts '.repeat(32));
    const right = (f: Uint8Array, out: Uint8Array): number => {
      if (f.length !== 25) throw new Error('corrupt');
      out.fill(0);
      out.set(want);
      return want.length;
    };
    expect(checkAddonZstd({ zstdDecompress: right })).toBe(right);
    // leaves the tail as it was; decodes a truncated frame; one byte short; no libzstd
    expect(checkAddonZstd({ zstdDecompress: (f, out) => (right(f, new Uint8Array(out.length)), out.set(want), want.length) })).toBeUndefined();
    expect(checkAddonZstd({ zstdDecompress: (_f, out) => right(new Uint8Array(25), out) })).toBeUndefined();
    expect(checkAddonZstd({ zstdDecompress: (f, out) => right(f, out) - 1 })).toBeUndefined();
    expect(checkAddonZstd({ zstdDecompress: () => { throw Object.assign(new Error('x'), { code: 'ZSTD_UNAVAILABLE' }); } })).toBeUndefined();
    vi.stubEnv('BTRFS_TS_ZSTD', 'wasm');
    try {
      expect(checkAddonZstd({ zstdDecompress: right })).toBeUndefined();
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe.skipIf(!addonBuilt || !libzstd)('libzstd through the addon', () => {
  it('initZstd(decodeOnly) leaves the WebAssembly unloaded: decoding works, compressing asks for initZstd()', async () => {
    vi.resetModules();
    const fresh = await import('../src/compress/zstd.js');
    await fresh.initZstd(true);
    expect(fresh.zstdDecoder()).toBe('native');
    const frame = zstdCompress(text, 3);
    const { out, decodedLen } = fresh.zstdDecompressExtent(frame, text.length);
    expect(decodedLen).toBe(text.length);
    expect(Buffer.from(out).equals(Buffer.from(text))).toBe(true);
    expect(() => fresh.zstdCompress(text, 3)).toThrow(/call initCodecs/);
    await fresh.initZstd();
    expect(fresh.zstdDecompressExtent(fresh.zstdCompress(text, 3), text.length).decodedLen).toBe(text.length);
  });

  const manifest = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8')) as {
    extents: { fixture?: string; plainFile: string; fileOffset: number; extentOffset: number; ramBytes: number; plainBytes: number }[];
  };
  const kernelExtents = manifest.extents.filter((e) => e.fixture?.startsWith('zstd-'));

  it('decodes the kernel\'s zstd extents (zero-padded frames) to the file\'s bytes, the rest zeroed, into garbage', () => {
    expect(zstdDecoder()).toBe('native');
    expect(kernelExtents.length).toBeGreaterThanOrEqual(5);
    for (const e of kernelExtents) {
      const data = new Uint8Array(readFileSync(join(DIR, e.fixture!)));
      const { out, decodedLen } = zstdDecompressExtent(data, e.ramBytes, new Uint8Array(e.ramBytes + 100).fill(0xa5));
      const want = plain(e.plainFile).subarray(e.fileOffset, e.fileOffset + e.plainBytes);
      expect(out.length, e.fixture).toBe(e.ramBytes);
      expect(decodedLen, e.fixture).toBeGreaterThanOrEqual(want.length);
      expect(Buffer.from(out.subarray(0, want.length)).equals(Buffer.from(want)), e.fixture).toBe(true);
      expect(out.subarray(decodedLen).every((b) => b === 0), e.fixture).toBe(true);
    }
  });

  it('decodes our own frames of every size and level, into shared memory too, a new array when the buffer is short', () => {
    for (const [len, level] of [[1, 1], [4095, 3], [4096, -5], [65_537, 9], [131_072, 15]] as const) {
      const frame = zstdCompress(text.subarray(0, len), level);
      const shared = new Uint8Array(new SharedArrayBuffer(131_072)).fill(0x5a);
      const a = zstdDecompressExtent(frame, 131_072, shared);
      expect(a.out.buffer).toBe(shared.buffer);
      expect(a.decodedLen).toBe(len);
      expect(Buffer.from(a.out.subarray(0, len)).equals(Buffer.from(text.subarray(0, len)))).toBe(true);
      expect(a.out.subarray(len).every((b) => b === 0)).toBe(true);
      const b = zstdDecompressExtent(frame, 131_072, new Uint8Array(100));
      expect(b.out.length).toBe(131_072);
      expect(Buffer.from(b.out).equals(Buffer.from(a.out))).toBe(true);
    }
  });

  // (a frame without a content size that decodes past ramBytes: compress-facade.test.ts, on whichever decoder is loaded)
  it('refuses a corrupt frame as the wasm decoder does (ZSTD_CORRUPT, same message), a frame saying it is too long before decoding', () => {
    const frame = zstdCompress(text.subarray(0, 100_000), 3);
    expect(() => zstdDecompressExtent(frame, 65_536)).toThrow(expect.objectContaining({ code: 'DECODED_TOO_LONG' }));
    const corrupt = frame.slice();
    for (let i = 40; i < 60; i++) corrupt[i] ^= 0x5f;
    for (const [f, ram] of [[corrupt, 131_072]] as const) {
      let err: unknown;
      try {
        zstdDecompressExtent(f, ram, new Uint8Array(131_072));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CodecError);
      expect((err as CodecError).code).toBe('ZSTD_CORRUPT');
      expect((err as Error).message).toMatch(new RegExp(`^zstd: frame does not decode \\(.+\\); or decodes to more than ${ram} bytes$`));
    }
  });
});
