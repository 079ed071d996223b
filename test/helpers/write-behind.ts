import type { WriteBehind } from '../../src/io/file-sink.js';
import type { DataFill } from '../../src/send/data-fill.js';
import { crc32cBtrfs } from '../../src/util/crc32c.js';

/** `n` pseudo-random bytes from `seed`. */
export function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) out[i] = (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) >>> 24;
  return out;
}

/** The crc32c checksum of each 4 KiB sector of `b`, back to back as the csum tree stores them. */
export function sumsOf(b: Uint8Array): Uint8Array {
  const sums = new Uint8Array((b.length / 4096) * 4);
  const dv = new DataView(sums.buffer);
  for (let i = 0; i < b.length / 4096; i++) dv.setUint32(i * 4, crc32cBtrfs(b.subarray(i * 4096, (i + 1) * 4096)), true);
  return sums;
}

/** `fill` as FileSink's WriteBehind, counting the writes its thread left to their in-line fallbacks. */
export function countingWriteBehind(fill: DataFill): WriteBehind & { inLine: number } {
  const w = {
    inLine: 0,
    writesBehind: (b: Uint8Array) => fill.writesBehind(b),
    postWrite: (fd: number, b: Uint8Array, position: number, fallback: () => Promise<void>, after: () => void) =>
      fill.postWrite(fd, b, position, async () => { w.inLine++; await fallback(); }, after),
    settleJob: (job: number) => fill.settleJob(job),
  };
  return w;
}
