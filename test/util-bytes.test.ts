import { describe, expect, it } from 'vitest';
import { copyInto, placeInto, u64At } from '../src/util/bytes.js';

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

  it('copies plain memory into shared memory (the output arena of a send) at any alignment', () => {
    const plain = Uint8Array.from({ length: 5000 }, (_, i) => (i * 13) & 0xff);
    for (const len of [0, 255, 256, 4099]) {
      for (let s = 0; s < 8; s++) {
        for (let d = 0; d < 8; d++) {
          const out = new Uint8Array(new SharedArrayBuffer(len + 16)).fill(0xaa);
          const src = plain.subarray(s, s + len);
          copyInto(out, src, d);
          expect(Buffer.from(out.subarray(d, d + len)).equals(Buffer.from(src)), `len ${len} src ${s} dst ${d}`).toBe(true);
          expect(out.subarray(0, d).every((b) => b === 0xaa)).toBe(true);
          expect(out.subarray(d + len).every((b) => b === 0xaa)).toBe(true);
        }
      }
    }
  });
});

describe('copyInto within one shared buffer', () => {
  it('copies overlapping ranges as memmove does (forwards and backwards)', () => {
    for (const [from, to] of [[0, 100], [100, 0], [3, 4000], [4000, 3]]) {
      const buf = new Uint8Array(new SharedArrayBuffer(10_000));
      for (let i = 0; i < buf.length; i++) buf[i] = (i * 7 + 1) & 0xff;
      const want = Uint8Array.from(buf);
      want.copyWithin(to!, from!, from! + 5000);
      copyInto(buf, buf.subarray(from!, from! + 5000), to!);
      expect(Buffer.from(buf).equals(Buffer.from(want)), `${from} -> ${to}`).toBe(true);
    }
  });
});

describe('placeInto', () => {
  it('copies what is elsewhere (also another part of the same buffer, and shared memory) and leaves what is already in place', () => {
    const out = Uint8Array.from({ length: 600 }, (_, i) => i & 0xff);
    placeInto(out, out.subarray(100, 400), 100); // in place: nothing moves
    expect(out.every((b, i) => b === (i & 0xff))).toBe(true);
    const src = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
    placeInto(out, src, 3);
    expect(Buffer.from(out.subarray(3, 303)).equals(Buffer.from(src))).toBe(true);
    expect(out[2]).toBe(2);
    expect(out[303]).toBe(303 & 0xff);
    const shared = new Uint8Array(new SharedArrayBuffer(400));
    placeInto(shared, src, 5);
    expect(Buffer.from(shared.subarray(5, 305)).equals(Buffer.from(src))).toBe(true);
    placeInto(out, out.subarray(0, 10), 590); // the same buffer, another place: copied
    expect(Buffer.from(out.subarray(590, 600)).equals(Buffer.from(out.subarray(0, 10)))).toBe(true);
  });
});

describe('u64At (tree items and stream attributes)', () => {
  it('equals DataView.getBigUint64 on both sides of 2^53 and at every offset', () => {
    const values = [0n, 1n, 0xffffffffn, 0x100000000n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n) + 12345n, (1n << 64n) - 1n];
    let x = 0x9e3779b9;
    for (let i = 0; i < 200; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      const y = (Math.imul(x, 22695477) + 1) >>> 0;
      values.push((BigInt(x) << 32n) | BigInt(y));
    }
    const b = new Uint8Array(16);
    const dv = new DataView(b.buffer);
    for (const v of values) {
      for (const off of [0, 3, 8]) {
        dv.setBigUint64(off, v, true);
        expect(u64At(b, off)).toBe(v);
      }
    }
  });
});
