import { describe, expect, it } from 'vitest';
import { copyInto } from '../src/util/bytes.js';

describe('copyInto', () => {
  it('copies out of shared memory into any position, whatever the alignment of either side', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(70_000));
    for (let i = 0; i < shared.length; i++) shared[i] = (i * 31 + 7) & 0xff;
    for (const len of [0, 1, 255, 256, 4099, 65_536]) {
      for (let s = 0; s < 8; s++) {
        for (let d = 0; d < 8; d++) {
          const src = shared.subarray(s, s + len);
          const out = new Uint8Array(len + 16).fill(0xaa);
          copyInto(out, src, d);
          expect(Buffer.from(out.subarray(d, d + len)).equals(Buffer.from(src)), `len ${len} src ${s} dst ${d}`).toBe(true);
          expect(out.subarray(0, d).every((b) => b === 0xaa)).toBe(true);
          expect(out.subarray(d + len).every((b) => b === 0xaa)).toBe(true);
        }
      }
    }
  });

  it('copies plain memory and into shared memory as set() does', () => {
    const plain = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
    const out = new Uint8Array(new SharedArrayBuffer(5008));
    copyInto(out, plain.subarray(3), 5);
    expect(Buffer.from(out.subarray(5, 5 + 4997)).equals(Buffer.from(plain.subarray(3)))).toBe(true);
  });
});
