import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { oracleRaw, oracleStd, pseudoRandom } from './helpers/crc-oracle.js';
import * as engineDefault from '../src/util/crc32c.js';
import { crcUpdate as crcUpdateTables, crcUpdateJs } from '../src/util/crc32c-slice16.js';
import { NATIVE_ADDON_PATH, nativeAddon } from '../src/util/native-addon.js';

// Oracles: the crc-32 package (test/helpers/crc-oracle.ts), standard check values, and the btrfs name
// hash of "default" as the kernel stores it. Every check runs on each engine: the module as loaded (our
// addon where it was built, else @node-rs/crc32 where it loads), and copies forced with BTRFS_TS_CRC32C
// onto @node-rs/crc32 and onto the tables.

type Crc32cModule = typeof engineDefault;

async function loadForced(engine: string): Promise<Crc32cModule> {
  vi.stubEnv('BTRFS_TS_CRC32C', engine);
  vi.resetModules();
  try {
    return await import('../src/util/crc32c.js');
  } finally {
    vi.unstubAllEnvs();
  }
}
const engineTables = await loadForced('tables');
const engineNodeRs = await loadForced('node-rs');
afterAll(() => vi.resetModules());

// the build (scripts/build-native.mjs) makes the addon wherever a C compiler and node's headers are
const addonBuilt = existsSync(NATIVE_ADDON_PATH) && process.env['BTRFS_TS_NATIVE'] !== 'off';

let nativeInstalled = true;
try {
  createRequire(import.meta.url)('@node-rs/crc32');
} catch {
  nativeInstalled = false;
}

describe('crc32c engine choice', () => {
  it('uses our addon where it was built, else the native engine where @node-rs/crc32 loads; the forced ones when forced', () => {
    if (!addonBuilt) console.log(`crc32c: no addon at ${NATIVE_ADDON_PATH} (or BTRFS_TS_NATIVE=off): its engine is not tested here`);
    expect(engineDefault.crc32cEngine).toBe(addonBuilt && process.arch === 'x64' ? 'addon' : nativeInstalled ? 'native' : 'tables');
    expect(engineNodeRs.crc32cEngine).toBe(nativeInstalled ? 'native' : 'tables');
    expect(engineTables.crc32cEngine).toBe('tables');
  });

  it('takes the addon\'s CRC only when it computes CRC32C on one lane and three, and per 4 KiB piece', () => {
    const { checkAddonCrc32c } = engineDefault;
    expect(checkAddonCrc32c(undefined)).toBeUndefined();
    expect(checkAddonCrc32c({})).toBeUndefined();
    const pieces = (d: Uint8Array, size: number, out: Uint32Array): void => {
      for (let i = 0; i < out.length; i++) out[i] = oracleRaw(d.subarray(i * size, (i + 1) * size), 0);
    };
    const good = { crc32cRaw: (d: Uint8Array, c: number) => oracleRaw(d, c), crc32cPiecesRaw: pieces };
    expect(checkAddonCrc32c(good)).toBeDefined();
    // standard in place of raw; wrong past the first lane (a broken lane combination); pieces from the wrong seed
    expect(checkAddonCrc32c({ ...good, crc32cRaw: (d: Uint8Array, c: number) => ~oracleRaw(d, ~c >>> 0) >>> 0 })).toBeUndefined();
    expect(checkAddonCrc32c({ ...good, crc32cRaw: (d: Uint8Array, c: number) => (d.length > 4000 ? oracleRaw(d.subarray(1), c) : oracleRaw(d, c)) })).toBeUndefined();
    expect(checkAddonCrc32c({ ...good, crc32cPiecesRaw: (d: Uint8Array, size: number, out: Uint32Array) => out.forEach((_, i) => (out[i] = oracleRaw(d.subarray(i * size, (i + 1) * size), 1))) })).toBeUndefined();
    expect(checkAddonCrc32c({ ...good, crc32cRaw: () => { throw new Error('no'); } })).toBeUndefined();
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
  ['forced @node-rs/crc32', engineNodeRs],
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

describe.skipIf(!addonBuilt || !nativeAddon?.crc32cRaw)('our addon directly', () => {
  const { crc32cRaw, crc32cPiecesRaw } = nativeAddon ?? {};
  it('equals crc-32 at lane boundaries (3 x 1360 bytes a round), on unaligned and shared-memory views', () => {
    const big = pseudoRandom(3 * 4080 + 64, 11);
    for (const len of [0, 7, 8, 9, 1359, 1360, 4079, 4080, 4081, 4096, 8160, 8167, 3 * 4080 + 5]) {
      for (const off of [0, 1, 3]) {
        const d = big.subarray(off, off + len);
        expect(crc32cRaw!(d, 0x1234567)).toBe(oracleRaw(d, 0x1234567));
      }
    }
    const shared = new Uint8Array(new SharedArrayBuffer(10_000));
    shared.set(big.subarray(0, 10_000));
    expect(crc32cRaw!(shared.subarray(3), 0)).toBe(oracleRaw(big.subarray(3, 10_000), 0));
  });

  it('crc32cPiecesRaw gives each whole piece\'s raw CRC, as many as out holds, and refuses bad arguments', () => {
    const d = pseudoRandom(5 * 4096 + 100, 5);
    const out = new Uint32Array(7).fill(0xeeeeeeee);
    crc32cPiecesRaw!(d, 4096, out);
    for (let i = 0; i < 5; i++) expect(out[i]).toBe(oracleRaw(d.subarray(i * 4096, (i + 1) * 4096), 0));
    expect(out[5]).toBe(0xeeeeeeee); // only whole pieces
    const two = new Uint32Array(2);
    crc32cPiecesRaw!(d, 512, two);
    expect([...two]).toEqual([oracleRaw(d.subarray(0, 512), 0), oracleRaw(d.subarray(512, 1024), 0)]);
    expect(() => crc32cPiecesRaw!(d, 0, two)).toThrow(TypeError);
    expect(() => crc32cPiecesRaw!(d, 4096, new Int32Array(2) as unknown as Uint32Array)).toThrow(TypeError);
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
