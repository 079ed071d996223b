import { createRequire } from 'node:module';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { oracleRaw, oracleStd, pseudoRandom } from './helpers/crc-oracle.js';
import * as engineDefault from '../src/util/crc32c.js';
import { crcUpdate as crcUpdateTables, crcUpdateJs } from '../src/util/crc32c-slice16.js';

// Oracles: the crc-32 package (test/helpers/crc-oracle.ts), standard check values, and the btrfs name
// hash of "default" as the kernel stores it. Every check runs on both engines: the module as loaded
// (native where @node-rs/crc32 loads) and a second copy forced onto the tables with BTRFS_TS_CRC32C.

type Crc32cModule = typeof engineDefault;

async function loadForcedTables(): Promise<Crc32cModule> {
  vi.stubEnv('BTRFS_TS_CRC32C', 'tables');
  vi.resetModules();
  try {
    return await import('../src/util/crc32c.js');
  } finally {
    vi.unstubAllEnvs();
  }
}
const engineTables = await loadForcedTables();
afterAll(() => vi.resetModules());

let nativeInstalled = true;
try {
  createRequire(import.meta.url)('@node-rs/crc32');
} catch {
  nativeInstalled = false;
}

describe('crc32c engine choice', () => {
  it('uses the native engine where @node-rs/crc32 loads, the tables when forced', () => {
    expect(engineDefault.crc32cEngine).toBe(nativeInstalled ? 'native' : 'tables');
    expect(engineTables.crc32cEngine).toBe('tables');
  });

  it('falls back when the package is absent, is not what we expect, or computes something else', () => {
    const { loadNativeCrc32c } = engineDefault;
    expect(loadNativeCrc32c(() => { throw new Error("Cannot find module '@node-rs/crc32-linux-x64-gnu'"); })).toBeUndefined();
    expect(loadNativeCrc32c(() => ({}))).toBeUndefined();
    expect(loadNativeCrc32c(() => undefined)).toBeUndefined();
    // plain CRC32 (zlib's polynomial) in place of CRC32C
    expect(loadNativeCrc32c(() => ({ crc32c: (d: Uint8Array) => ((d.length * 0x9e3779b1) >>> 0) }))).toBeUndefined();
    // right check value but ignores the chaining state
    expect(loadNativeCrc32c(() => ({ crc32c: (d: Uint8Array) => oracleStd(d) }))).toBeUndefined();
    // a correct implementation is accepted
    const good = (d: Uint8Array, s = 0): number => CRC_STD_CHAIN(d, s);
    expect(loadNativeCrc32c(() => ({ crc32c: good }))).toBe(good);
  });
});

describe('the native binary package taken directly', () => {
  it('is named only where index.js would certainly pick it (glibc Linux, x64/arm64)', () => {
    expect(engineDefault.nativeBinaryPackage('linux', 'x64')).toBe('@node-rs/crc32-linux-x64-gnu');
    expect(engineDefault.nativeBinaryPackage('linux', 'arm64')).toBe('@node-rs/crc32-linux-arm64-gnu');
    expect(engineDefault.nativeBinaryPackage('linux', 'ia32')).toBeUndefined();
    expect(engineDefault.nativeBinaryPackage('darwin', 'arm64')).toBeUndefined();
    expect(engineDefault.nativeBinaryPackage('win32', 'x64')).toBeUndefined();
  });

  it.skipIf(!nativeInstalled || engineDefault.nativeBinaryPackage(process.platform, process.arch) === undefined)('loads and passes the probe here, from @node-rs/crc32\'s directory', () => {
    const req = createRequire(import.meta.url);
    const name = engineDefault.nativeBinaryPackage(process.platform, process.arch)!;
    expect(engineDefault.loadNativeCrc32c(() => createRequire(req.resolve('@node-rs/crc32'))(name))).toBeTypeOf('function');
  });
});

/** Standard CRC32C continuing from a previous standard value, as @node-rs/crc32 defines its state. */
function CRC_STD_CHAIN(d: Uint8Array, state: number): number {
  return ~oracleRaw(d, ~state >>> 0) >>> 0;
}

describe.each([
  ['as loaded', engineDefault],
  ['forced tables', engineTables],
])('crc32c (%s)', (_name, m) => {
  it('matches the standard check value and the btrfs name hash of "default"', () => {
    expect(m.crc32cBtrfs(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(m.btrfsNameHash(new TextEncoder().encode('default'))).toBe(0x8dbfc2d2);
    expect(m.crc32cBtrfs(new Uint8Array(0))).toBe(0);
    expect(m.crc32cRaw(new Uint8Array(0), 0x1234)).toBe(0x1234);
  });

  it('equals crc-32 for every length 0..300 and unaligned views, both flavours', () => {
    const big = pseudoRandom(1024, 7);
    for (const off of [0, 1, 2, 3, 5]) {
      for (let len = 0; len <= 300; len++) {
        const d = big.subarray(off, off + len);
        expect(m.crc32cBtrfs(d)).toBe(oracleStd(d));
        expect(m.crc32cRaw(d, 0xdeadbeef)).toBe(oracleRaw(d, 0xdeadbeef));
        expect(m.crc32cRaw(d, 0)).toBe(oracleRaw(d, 0));
      }
    }
  });

  it('equals crc-32 on large inputs (larger than the WebAssembly staging block), Buffers too, and chains', () => {
    const d = pseudoRandom(3 * 320 * 1024 + 13, 99);
    expect(m.crc32cBtrfs(d)).toBe(oracleStd(d));
    expect(m.crc32cBtrfs(Buffer.from(d.buffer, 5, 70_000))).toBe(oracleStd(d.subarray(5, 70_005)));
    const seed = m.crc32cRaw(d.subarray(0, 100_001), 0);
    expect(m.crc32cRaw(d.subarray(100_001), seed)).toBe(m.crc32cRaw(d, 0));
    expect(m.crc32cRaw(d, 0)).toBe(oracleRaw(d, 0));
    expect(m.crc32cRaw(d, 0xffffffff)).toBe(oracleRaw(d, 0xffffffff));
  });
});

describe('crc32c table engines directly', () => {
  it('the JS loop and the WebAssembly loop equal crc-32', () => {
    const big = pseudoRandom(5000, 3);
    for (const len of [0, 1, 15, 16, 17, 255, 256, 257, 4096, 4999]) {
      const d = big.subarray(1, 1 + len);
      expect(crcUpdateJs(0xdeadbeef, d)).toBe(oracleRaw(d, 0xdeadbeef));
      expect(crcUpdateTables(0xdeadbeef, d)).toBe(oracleRaw(d, 0xdeadbeef));
    }
  });
});
