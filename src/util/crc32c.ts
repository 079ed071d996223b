import { createRequire } from 'node:module';
import { crcUpdate as crcUpdateTables, crcUpdateJs } from './crc32c-slice16.js';
import { nativeAddon, type NativeAddon } from './native-addon.js';

/**
 * Two CRC32C flavours meet in this project and must not be confused:
 * - the send stream stores the raw register: seed 0, no final inversion (kernel `crc32c(0, ...)`);
 * - on-disk btrfs checksums are the standard CRC32C: seed ~0, final inversion.
 * Every caller goes through this module (checksum-type code too), which picks the engine once:
 * - `addon`: our own native addon (native-addon.ts), the crc32 instruction on three lanes at once and the
 *   4 KiB sectors of a buffer in one call — 4–5× `native` here; built at install where a C compiler is;
 * - `native`: @node-rs/crc32, the CPU's crc32 instruction (SSE4.2 / ARMv8 CRC) on one lane, several times
 *   faster than any table loop; an optional dependency with a prebuilt binary per platform;
 * - `tables`: our slice-by-16 (crc32c-slice16.ts: WebAssembly, JS for short inputs), where neither loads
 *   or passes the probe. BTRFS_TS_CRC32C=tables or =node-rs forces an engine (tests, benchmarks).
 * The native function computes the standard form and chains standard values (its state is the previous
 * result), so the raw register c maps to its state ~c: raw(c, d) = ~native(d, ~c).
 */
export type Crc32cNative = (input: Uint8Array, initialState?: number) => number;

/** Below this many bytes the native call costs more than the JS loop (measured: docs/performance.md). */
const NATIVE_MIN = 128;
/**
 * The same for our own addon's direct call: short commands' CRCs (a send's, ~100 bytes each) and name
 * hashes in a short command's cold JavaScript cost more than the call from 16 bytes on (docs/performance.md,
 * twelfth session, incr16: an incremental send 0.806 -> 0.775 G instructions).
 */
const ADDON_MIN = 16;

const CHECK = new TextEncoder().encode('123456789');
const CHECK_VALUE = 0xe3069283;

/**
 * The native crc32c from `load()` if it loads and passes the probe (check value, chaining, raw form),
 * else undefined. `load` is a parameter so tests can exercise the fallback without uninstalling anything.
 */
export function loadNativeCrc32c(load: () => unknown): Crc32cNative | undefined {
  try {
    const f = (load() as { crc32c?: unknown } | undefined)?.crc32c;
    if (typeof f !== 'function') return undefined;
    const native = f as Crc32cNative;
    if (native(CHECK, 0) >>> 0 !== CHECK_VALUE) return undefined;
    if (native(CHECK.subarray(4), native(CHECK.subarray(0, 4), 0)) >>> 0 !== CHECK_VALUE) return undefined;
    if (~native(CHECK, ~0x1234 >>> 0) >>> 0 !== crcUpdateJs(0x1234, CHECK)) return undefined;
    return native;
  } catch {
    return undefined; // not installed for this platform, ABI mismatch, ...
  }
}

/**
 * The binary package @node-rs/crc32's index.js would pick here, where the name is certain without asking:
 * glibc Linux on x64/arm64 (a musl system fails to load it, and then index.js decides). index.js reads
 * /usr/bin/ldd to tell glibc from musl and first tries a binary beside itself (an exception when absent):
 * 14 M instructions of every command's start (callgrind: 17 M to require it, 3 M for the binary package).
 */
export function nativeBinaryPackage(platform: string, arch: string): string | undefined {
  return platform === 'linux' && (arch === 'x64' || arch === 'arm64') ? `@node-rs/crc32-linux-${arch}-gnu` : undefined;
}

type AddonCrc = Required<Pick<NativeAddon, 'crc32cRaw' | 'crc32cPiecesRaw'>>;

/**
 * The addon's CRC32C if `addon` has it and it gives the check value and chains on short inputs (one lane),
 * and on inputs long enough for its three lanes gives what it gives in short pieces chained (so the
 * lanes' combination is checked against the one-lane loop, not against a JavaScript pass over kilobytes
 * of cold code at every start); each 4 KiB piece's CRC too. Else undefined.
 */
export function checkAddonCrc32c(addon: NativeAddon | undefined): AddonCrc | undefined {
  const { crc32cRaw, crc32cPiecesRaw } = addon ?? {};
  if (typeof crc32cRaw !== 'function' || typeof crc32cPiecesRaw !== 'function') return undefined;
  try {
    if ((crc32cRaw(CHECK, 0xffffffff) ^ 0xffffffff) >>> 0 !== CHECK_VALUE) return undefined;
    if (crc32cRaw(CHECK.subarray(4), crc32cRaw(CHECK.subarray(0, 4), 0x1234)) !== crcUpdateJs(0x1234, CHECK)) return undefined;
    const probe = new Uint8Array(2 * 4096 + 13);
    for (let i = 0; i < probe.length; i++) probe[i] = (i * 131 + (i >>> 7)) & 0xff;
    if (crc32cRaw(probe.subarray(0, 200), 7) !== crcUpdateJs(7, probe.subarray(0, 200))) return undefined;
    /** The raw CRC of `d` in pieces of 1000 bytes, each on one lane. */
    const chained = (d: Uint8Array, c: number): number => {
      for (let o = 0; o < d.length; o += 1000) c = crc32cRaw(d.subarray(o, o + 1000), c);
      return c;
    };
    if (crc32cRaw(probe, 0x5a5a5a5a) !== chained(probe, 0x5a5a5a5a)) return undefined;
    const pieces = new Uint32Array(2);
    crc32cPiecesRaw(probe, 4096, pieces);
    for (let i = 0; i < 2; i++) if (pieces[i] !== chained(probe.subarray(i * 4096, (i + 1) * 4096), 0)) return undefined;
    return { crc32cRaw, crc32cPiecesRaw };
  } catch {
    return undefined;
  }
}

const forced = process.env['BTRFS_TS_CRC32C'];
const addon = forced === 'tables' || forced === 'node-rs' ? undefined : checkAddonCrc32c(nativeAddon);

function chooseNative(): Crc32cNative | undefined {
  // the addon does all of it: @node-rs/crc32 is not even loaded (~17 M instructions of start-up)
  if (forced === 'tables' || addon !== undefined) return undefined;
  const req = createRequire(import.meta.url);
  const direct = nativeBinaryPackage(process.platform, process.arch);
  // resolved from @node-rs/crc32's own directory, as its index.js would (hoisted or nested alike)
  const fast = direct !== undefined ? loadNativeCrc32c(() => createRequire(req.resolve('@node-rs/crc32'))(direct)) : undefined;
  return fast ?? loadNativeCrc32c(() => createRequire(import.meta.url)('@node-rs/crc32'));
}

const native = chooseNative();

/** Which engine this process uses, for tests and benchmarks. */
export const crc32cEngine: 'addon' | 'native' | 'tables' = addon !== undefined ? 'addon' : native !== undefined ? 'native' : 'tables';

/** Raw CRC32C register update: seed `crc`, no inversion on entry or exit. */
export const crcUpdate: (crc: number, d: Uint8Array) => number = addon !== undefined
  ? (crc, d) => (d.length >= ADDON_MIN ? addon.crc32cRaw(d, crc) : crcUpdateJs(crc, d))
  : native !== undefined
    ? (crc, d) => (d.length >= NATIVE_MIN ? ~native(d, ~crc >>> 0) >>> 0 : crcUpdateJs(crc, d))
    : crcUpdateTables;

/**
 * Raw CRC32C (seed 0) of each whole `size`-byte piece of `data` from its start, into `out` (length
 * floor(|data| / size)): a receive's 4 KiB data sectors. With the native engine it is one call per piece
 * and nothing else — through crcUpdate each piece also paid a closure call, the length test and the
 * inversions on both sides (~10% of the sector CRCs' instructions; docs/performance.md, recv13b).
 * The raw register 0 is the native state ~0: raw(0, S) = ~native(S, 0xffffffff). The addon does all the
 * pieces in one call.
 */
export const crcPiecesRaw: (data: Uint8Array, size: number, out: Uint32Array) => void = addon !== undefined
  ? addon.crc32cPiecesRaw
  : native !== undefined
    ? (data, size, out) => {
        const n = out.length;
        for (let i = 0, o = 0; i < n; i++, o += size) out[i] = ~native(data.subarray(o, o + size), 0xffffffff);
      }
    : (data, size, out) => {
        const n = out.length;
        for (let i = 0, o = 0; i < n; i++, o += size) out[i] = crcUpdateTables(0, data.subarray(o, o + size));
      };

/** CRC32C raw register over `data` starting from `crc` (send stream: crc32cRaw(data, 0)). */
export function crc32cRaw(data: Uint8Array, crc = 0): number {
  return crcUpdate(crc, data);
}

/** Standard CRC32C as btrfs stores it in tree block and data checksums. */
export function crc32cBtrfs(data: Uint8Array): number {
  return ~crcUpdate(0xffffffff, data) >>> 0;
}

/** btrfs_extref_hash: the key offset of an INODE_EXTREF item, crc32c of the name seeded with the (truncated) parent. */
export function btrfsExtrefHash(parent: bigint, name: Uint8Array): bigint {
  return BigInt(crc32cRaw(name, Number(parent & 0xffffffffn)));
}

/** btrfs name hash for DIR_ITEM keys: crc32c(~1, name) without final inversion. */
export function btrfsNameHash(name: Uint8Array): number {
  return crc32cRaw(name, 0xfffffffe);
}
