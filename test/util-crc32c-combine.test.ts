import { describe, expect, it, vi } from 'vitest';
import { oracleRaw, oracleStd, pseudoRandom } from './helpers/crc-oracle.js';
import * as combineDefault from '../src/util/crc32c-combine.js';

// Oracle: the crc-32 package (test/helpers/crc-oracle.ts). Run on the engine as loaded (native where
// @node-rs/crc32 loads) and on the table engine (BTRFS_TS_CRC32C=tables, fresh module copies).

vi.stubEnv('BTRFS_TS_CRC32C', 'tables');
vi.resetModules();
const combineTables = await import('../src/util/crc32c-combine.js');
const { crc32cEngine: forcedEngine } = await import('../src/util/crc32c.js');
vi.unstubAllEnvs();
vi.resetModules();

describe.each([
  ['as loaded', combineDefault],
  ['forced tables', combineTables],
])('crc32c combination (one pass for the stream CRC and the sector checksums; %s)', (name, m) => {
  const { CRC_SECTOR, btrfsCsumFromRaw, crc32cCombineSums, crc32cRawBySector, crc32cShiftSector } = m;
  it('runs on the engine it names', () => {
    if (name === 'forced tables') expect(forcedEngine).toBe('tables');
    expect(combineTables).not.toBe(combineDefault);
  });

  it('shift through a sector of zeros equals the CRC register run over 4096 zero bytes', () => {
    const zeros = new Uint8Array(CRC_SECTOR);
    for (const c of [0, 1, 0x80000000, 0xffffffff, 0x12345678, 0xdeadbeef]) {
      expect(crc32cShiftSector(c)).toBe(oracleRaw(zeros, c));
    }
  });

  it('crc(A || S) = shift(crc(A)) ^ rawcrc(S), and standard(S) = rawcrc(S) ^ constant', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const a = pseudoRandom(seed * 37, seed);
      const s = pseudoRandom(CRC_SECTOR, seed + 100);
      const ca = oracleRaw(a, 0);
      expect((crc32cShiftSector(ca) ^ oracleRaw(s, 0)) >>> 0).toBe(oracleRaw(new Uint8Array([...a, ...s]), 0));
      expect(btrfsCsumFromRaw(oracleRaw(s, 0))).toBe(oracleStd(s));
    }
  });

  it("crc32cCombineSums: the raw CRC of sectors from their stored checksums (btrfs's, little-endian), from any register", () => {
    for (let n = 0; n <= 9; n++) {
      const data = pseudoRandom(n * CRC_SECTOR, n + 300);
      const sums = new Uint8Array(4 * n);
      for (let i = 0; i < n; i++) new DataView(sums.buffer).setUint32(4 * i, oracleStd(data.subarray(i * CRC_SECTOR, (i + 1) * CRC_SECTOR)), true);
      for (const c of [0, 0xffffffff, 0x12345678]) expect(crc32cCombineSums(c, sums, n)).toBe(oracleRaw(data, c));
    }
  });

  it('crc32cRawBySector: the register over the whole data and every whole sector\'s raw CRC', () => {
    for (const len of [0, 100, CRC_SECTOR - 1, CRC_SECTOR, CRC_SECTOR + 1, 5 * CRC_SECTOR, 7 * CRC_SECTOR + 123]) {
      const d = pseudoRandom(len + 3, len).subarray(3); // an unaligned view
      const sectors = new Uint32Array(Math.floor(len / CRC_SECTOR));
      expect(crc32cRawBySector(0x5a5a1234, d, sectors)).toBe(oracleRaw(d, 0x5a5a1234));
      for (let i = 0; i < sectors.length; i++) {
        const s = d.subarray(i * CRC_SECTOR, (i + 1) * CRC_SECTOR);
        expect(sectors[i]).toBe(oracleRaw(s, 0));
        expect(btrfsCsumFromRaw(sectors[i]!)).toBe(oracleStd(s));
      }
    }
  });
});
