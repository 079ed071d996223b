import { describe, expect, it } from 'vitest';
import { oracleRaw, oracleStd, pseudoRandom } from './helpers/crc-oracle.js';
import { btrfsNameHash, crc32cBtrfs, crc32cRaw } from '../src/util/crc32c.js';
import { crcUpdateJs } from '../src/util/crc32c-slice16.js';

// Oracles: the crc-32 package (test/helpers/crc-oracle.ts), standard check values, and the btrfs name
// hash of "default" as the kernel stores it.

describe('crc32c', () => {
  it('matches the standard check value and the btrfs name hash of "default"', () => {
    expect(crc32cBtrfs(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(btrfsNameHash(new TextEncoder().encode('default'))).toBe(0x8dbfc2d2);
    expect(crc32cBtrfs(new Uint8Array(0))).toBe(0);
    expect(crc32cRaw(new Uint8Array(0), 0x1234)).toBe(0x1234);
  });

  it('equals crc-32 for every length 0..300 and unaligned views, both flavours and both engines', () => {
    const big = pseudoRandom(1024, 7);
    for (const off of [0, 1, 2, 3, 5]) {
      for (let len = 0; len <= 300; len++) {
        const d = big.subarray(off, off + len);
        expect(crc32cBtrfs(d)).toBe(oracleStd(d));
        expect(crc32cRaw(d, 0xdeadbeef)).toBe(oracleRaw(d, 0xdeadbeef));
        expect(crcUpdateJs(0xdeadbeef, d)).toBe(oracleRaw(d, 0xdeadbeef));
      }
    }
  });

  it('equals crc-32 on large inputs (larger than the WebAssembly staging block) and chains', () => {
    const d = pseudoRandom(3 * 320 * 1024 + 13, 99);
    expect(crc32cBtrfs(d)).toBe(oracleStd(d));
    const seed = crc32cRaw(d.subarray(0, 100_001), 0);
    expect(crc32cRaw(d.subarray(100_001), seed)).toBe(crc32cRaw(d, 0));
    expect(crc32cRaw(d, 0)).toBe(oracleRaw(d, 0));
  });
});
