import CRC32C from 'crc-32/crc32c.js';

/** Oracle: the crc-32 package (an independent CRC32C), standard form directly, raw form by its seed/inversion. */
export const oracleStd = (d: Uint8Array): number => CRC32C.buf(d, 0) >>> 0;
export const oracleRaw = (d: Uint8Array, seed: number): number => ~CRC32C.buf(d, ~seed) >>> 0;

/** Deterministic test bytes (LCG), so a failing length/seed can be replayed. */
export function pseudoRandom(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}
