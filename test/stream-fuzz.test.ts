import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dumpStream } from '../src/dump/index.js';
import { BtrfsTsError, StreamError } from '../src/errors.js';
import { allCommands, encodeAll } from './helpers/craft.js';
import { countingReceiver } from './helpers/null-receiver.js';
import { capturedStreams, STREAMS_DIR } from './helpers/streams.js';

/** Small deterministic PRNG so a failing iteration can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

function mutate(src: Uint8Array, r: () => number): Uint8Array {
  const kind = Math.floor(r() * 4);
  const pos = Math.floor(r() * src.length);
  switch (kind) {
    case 0: { // flip bits in a few bytes
      const out = src.slice();
      for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) out[Math.floor(r() * out.length)]! ^= 1 << Math.floor(r() * 8);
      return out;
    }
    case 1: return src.slice(0, pos); // cut
    case 2: { // insert random bytes
      const ins = Uint8Array.from({ length: 1 + Math.floor(r() * 16) }, () => Math.floor(r() * 256));
      const out = new Uint8Array(src.length + ins.length);
      out.set(src.subarray(0, pos)); out.set(ins, pos); out.set(src.subarray(pos), pos + ins.length);
      return out;
    }
    default: { // delete a run
      const n = 1 + Math.floor(r() * 32);
      const out = new Uint8Array(Math.max(0, src.length - n));
      out.set(src.subarray(0, pos)); out.set(src.subarray(Math.min(src.length, pos + n)), pos);
      return out.subarray(0, src.length - Math.min(n, src.length - pos));
    }
  }
}

describe('mutation fuzz: nothing but StreamError escapes the parser, dump or receiver driver', () => {
  const seeds: Uint8Array[] = [encodeAll(1, allCommands(1)), encodeAll(2, allCommands(2)), encodeAll(3, allCommands(3))];
  for (const f of capturedStreams()) {
    const buf = readFileSync(join(STREAMS_DIR, f));
    if (buf.length <= 300_000) seeds.push(new Uint8Array(buf));
  }

  it(`${seeds.length} seed streams × 150 mutations`, async () => {
    let failures = 0;
    let total = 0;
    for (let si = 0; si < seeds.length; si++) {
      const r = rng(0x5eed + si);
      for (let i = 0; i < 150; i++) {
        const m = mutate(seeds[si]!, r);
        total++;
        for (const run of [
          () => dumpStream([m], () => {}, { allStreams: true }),
          () => import('../src/stream/receiver.js').then(({ processStream }) => processStream([m], countingReceiver())),
        ]) {
          try {
            await run();
          } catch (e) {
            failures++;
            if (!(e instanceof StreamError)) {
              throw new Error(`seed ${si} iteration ${i}: ${e instanceof BtrfsTsError ? 'wrong error class' : 'foreign error'}: ${(e as Error).stack}`);
            }
            expect(typeof e.code).toBe('string');
            expect(e.offset).toBeDefined();
          }
        }
      }
    }
    // mutations must actually reach the error paths, or the test proves nothing
    expect(failures).toBeGreaterThan(total);
  });
});
