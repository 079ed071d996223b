// Malformed input must only ever produce CodecError (never another exception, never a hang).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  checkEncodedExtent,
  decodeExtent,
  diskToEncoded,
  initCodecs,
  lzo1xDecompress,
  zstdFrameInfo,
} from '../src/compress/index.js';
import { CodecError } from '../src/errors.js';

const DIR = join(__dirname, 'fixtures/compress');
const manifest = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8')) as {
  extents: { fixture?: string; compression: number; ramBytes: number; plainBytes: number }[];
};
// Small and mid-sized extents of every codec keep the loop fast.
const seeds = manifest.extents
  .filter((r) => r.fixture && r.ramBytes <= 65536)
  .map((r) => ({ ...r, data: new Uint8Array(readFileSync(join(DIR, r.fixture!))) }));

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return s;
  };
}

/** Runs fn; anything thrown must be a CodecError. Returns whether it threw. */
function onlyCodecErrors(fn: () => unknown, what: string): boolean {
  try {
    fn();
    return false;
  } catch (e) {
    if (!(e instanceof CodecError)) throw new Error(`${what}: non-CodecError escaped: ${String(e)}`, { cause: e });
    return true;
  }
}

beforeAll(() => initCodecs());

describe('codec fuzzing', () => {
  it('has seeds for all three codecs', () => {
    expect(new Set(seeds.map((s) => s.compression))).toEqual(new Set([1, 2, 3]));
  });

  it('mutated kernel extents: flips, truncations, garbage, lying lengths (bounded time)', () => {
    const r = rng(1234);
    let threw = 0;
    let iterations = 0;
    for (let i = 0; i < 3000; i++) {
      const s = seeds[i % seeds.length]!;
      const d = s.data.slice();
      const kind = r() % 6;
      let input = d;
      let ram = s.ramBytes;
      if (kind === 0) {
        for (let k = 1 + (r() % 4); k > 0; k--) {
          const at = r() % Math.min(d.length, 4096);
          d[at] = d[at]! ^ (1 << (r() % 8));
        }
      } else if (kind === 1) {
        input = d.subarray(0, r() % d.length);
      } else if (kind === 2) {
        for (let k = 0; k < d.length; k++) d[k] = r() & 0xff;
      } else if (kind === 3) {
        // Lying lengths: LZO header / segment length, zstd frame content size, zlib header bytes.
        const p = s.compression === 2 ? (r() % 2 === 0 ? 0 : 4) : s.compression === 3 ? 5 + (r() % 4) : r() % 2;
        d[p] = r() & 0xff;
        d[p + 1] = r() & 0xff;
      } else if (kind === 4) {
        ram = r() % (s.plainBytes + 1);
      } else {
        // Garbage written into the middle of the stream.
        const at = r() % d.length;
        for (let k = at; k < Math.min(d.length, at + 1 + (r() % 64)); k++) d[k] = r() & 0xff;
      }
      if (onlyCodecErrors(() => decodeExtent(s.compression, input, ram, 4096), `kind ${kind} seed ${s.fixture}`)) threw++;
      onlyCodecErrors(() => checkEncodedExtent({
        compression: diskToEncoded(s.compression, 4096), data: input, unencodedLen: ram,
        unencodedFileLen: Math.min(ram, s.plainBytes), unencodedOffset: 0, sectorsize: 4096,
      }), `check kind ${kind}`);
      iterations++;
    }
    expect(iterations).toBe(3000);
    // Most mutations must be detected (random bytes are rarely a valid stream).
    expect(threw).toBeGreaterThan(1500);
  });

  it('raw LZO1X and zstd frame parser on random garbage', () => {
    const r = rng(99);
    for (let i = 0; i < 3000; i++) {
      const len = r() % 300;
      const g = Uint8Array.from({ length: len }, () => r() & 0xff);
      if (i % 2 === 0 && len > 0) g[0] = 17 + (r() % 20); // push into the literal-first path
      onlyCodecErrors(() => lzo1xDecompress(g, 4096), 'lzo garbage');
      onlyCodecErrors(() => lzo1xDecompress(g), 'lzo garbage, growing output');
      const z = g.slice();
      if (z.length >= 4) z.set([0x28, 0xb5, 0x2f, 0xfd], 0);
      onlyCodecErrors(() => zstdFrameInfo(z), 'zstd header garbage');
      onlyCodecErrors(() => decodeExtent(3, z, 8192, 4096), 'zstd garbage');
      onlyCodecErrors(() => decodeExtent(1, g, 8192, 4096), 'zlib garbage');
    }
  });

  it('an LZO stream of repeated long matches with a tiny output cap fails fast instead of looping', () => {
    // literal 'a', then many M3 matches of length 33+255*k at distance 1
    const parts: number[] = [18, 0x61];
    for (let i = 0; i < 2000; i++) parts.push(32, 0, 0, 0, 200, 0, 0);
    parts.push(0x11, 0, 0);
    const src = Uint8Array.from(parts);
    expect(() => lzo1xDecompress(src, 1 << 16)).toThrow(expect.objectContaining({ code: 'LZO_OUTPUT_OVERRUN' }));
  });
});
