/**
 * zstd for btrfs extents. On disk (and in ENCODED_WRITE data) a zstd extent is ONE frame followed by
 * zero padding up to the sector. The wasm decoder wants exactly the frame (it reads the padding as a
 * broken second frame), so zstdFrameInfo() walks the frame header and block headers (RFC 8878 §3.1)
 * to find where the frame ends, and what window the frame needs.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { nativeAddon, type NativeAddon } from '../util/native-addon.js';
import { CodecError } from '../errors.js';

const ZSTD_MAGIC = 0xfd2fb528;
/** fs/btrfs/zstd.c ZSTD_BTRFS_MAX_WINDOWLOG: the kernel's decode workspace is sized for 2^17. */
export const ZSTD_BTRFS_MAX_WINDOWLOG = 17;
export const ZSTD_BTRFS_MAX_WINDOW = 1 << ZSTD_BTRFS_MAX_WINDOWLOG;
export const ZSTD_BTRFS_DEFAULT_LEVEL = 3;
export const ZSTD_BTRFS_MIN_LEVEL = -15;
export const ZSTD_BTRFS_MAX_LEVEL = 15;
const BLOCK_SIZE_MAX = 128 * 1024;

export interface ZstdFrameInfo {
  /** Bytes from the magic number through the last block (and checksum): the frame proper. */
  frameLen: number;
  headerLen: number;
  /** Window the decoder must keep (Frame_Content_Size for single-segment frames). */
  windowSize: number;
  /** Frame_Content_Size when the header records it. */
  contentSize?: number;
  singleSegment: boolean;
  hasChecksum: boolean;
  /** 0 = no dictionary. The kernel has no dictionaries, so anything else cannot be decoded there. */
  dictId: number;
  blockCount: number;
}

function fail(message: string, offset: number): never {
  throw new CodecError('ZSTD_FRAME', `zstd: ${message}`, { offset });
}

/** zstdFrameInfo's walk needed a block header at or past `known` (the bytes there are not the frame's yet). */
class BeyondKnown extends Error {}

/**
 * Whether zstdFrameInfo(data) reads nothing at or past `known`: then the first `known` bytes decide what it
 * says, whatever follows them. A send that reads an extent's first sector before the rest (the data read
 * behind it, send/extent-data.ts) plans with the frame walk only when the block headers all lie in it.
 */
export function zstdHeadersWithin(data: Uint8Array, known: number): boolean {
  // the frame header (at most 18 bytes) is read without the check
  if (known < 18) return false;
  try {
    zstdFrameInfo(data, known);
  } catch (e) {
    if (e instanceof BeyondKnown) return false;
    if (!(e instanceof CodecError)) throw e;
  }
  return true;
}

/**
 * Parses the frame at the start of `data`; trailing bytes (padding) are ignored. `known`: the walk must read
 * no header at or past it (zstdHeadersWithin).
 */
export function zstdFrameInfo(data: Uint8Array, known = data.length): ZstdFrameInfo {
  const n = data.length;
  if (n < 6) fail('too short for a frame header', 0);
  const magic = (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0;
  if (magic !== ZSTD_MAGIC) fail(`bad magic 0x${magic.toString(16)}`, 0);
  const fhd = data[4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd & 0x20) !== 0;
  if (fhd & 0x08) fail('reserved frame header bit set', 4);
  const hasChecksum = (fhd & 0x04) !== 0;
  const dictIdSize = [0, 1, 2, 4][fhd & 3]!;
  const fcsSize = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
  let p = 5;
  let windowSize = 0;
  if (!singleSegment) {
    const wd = data[p++]!;
    const windowLog = 10 + (wd >> 3);
    const base = 2 ** windowLog;
    windowSize = base + (base / 8) * (wd & 7);
  }
  if (n < p + dictIdSize + fcsSize) fail('truncated frame header', p);
  let dictId = 0;
  for (let i = 0; i < dictIdSize; i++) dictId += data[p + i]! * 2 ** (8 * i);
  p += dictIdSize;
  let contentSize: number | undefined;
  if (fcsSize > 0) {
    let v = 0;
    for (let i = 0; i < fcsSize; i++) v += data[p + i]! * 2 ** (8 * i);
    contentSize = fcsSize === 2 ? v + 256 : v;
    p += fcsSize;
  }
  if (singleSegment) windowSize = contentSize!;
  const headerLen = p;
  const blockMax = Math.min(windowSize, BLOCK_SIZE_MAX);
  let blockCount = 0;
  for (;;) {
    if (n - p < 3) fail('truncated block header', p);
    if (p + 3 > known) throw new BeyondKnown();
    const bh = data[p]! | (data[p + 1]! << 8) | (data[p + 2]! << 16);
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) fail('reserved block type', p);
    // Raw and compressed blocks carry `size` bytes; an RLE block carries one byte repeated `size` times.
    if (size > blockMax) fail(`block size ${size} exceeds the maximum ${blockMax}`, p);
    const payload = type === 1 ? 1 : size;
    if (n - p - 3 < payload) fail('truncated block', p);
    p += 3 + payload;
    blockCount++;
    if (last) break;
  }
  if (hasChecksum) {
    if (n - p < 4) fail('truncated content checksum', p);
    p += 4;
  }
  const info: ZstdFrameInfo = { frameLen: p, headerLen, windowSize, singleSegment, hasChecksum, dictId, blockCount };
  if (contentSize !== undefined) info.contentSize = contentSize;
  return info;
}

/** Whether the kernel can decode this frame: window within 2^17 and no dictionary. */
export function zstdWindowOk(info: ZstdFrameInfo): boolean {
  return info.windowSize <= ZSTD_BTRFS_MAX_WINDOW && info.dictId === 0;
}

type ZstdWasm = typeof import('@bokuweb/zstd-wasm');
let ready: Promise<void> | null = null;
let lib: ZstdWasm | null = null;

/**
 * Imports and instantiates the wasm library on first call: commands that never touch zstd do not load it.
 * `decodeOnly`: the caller only decodes, and where the addon's libzstd passes its probe the library is not
 * loaded at all — its 250 KB of WebAssembly took 20-26 ms to load and compile at every receive, which
 * decodes nothing on its way (encoded extents pass through) and otherwise decodes through the addon.
 * Compressing always needs the library (zstdCompress).
 */
export function initZstd(decodeOnly = false): Promise<void> {
  if (decodeOnly && !ready) {
    addonDecode ??= checkAddonZstd(nativeAddon);
    if (addonDecode) return Promise.resolve();
  }
  if (!ready) {
    ready = import('@bokuweb/zstd-wasm').then(async (m) => {
      await m.init();
      lib = m;
      direct = directDecoder();
      addonDecode = checkAddonZstd(nativeAddon);
    });
  }
  return ready;
}

/** The wasm module's exports the library's own decompress() uses, reached past its public API. */
interface ZstdModule {
  HEAPU8: Uint8Array;
  _malloc(n: number): number;
  _free(p: number): void;
  _ZSTD_createDCtx(): number;
  _ZSTD_decompress_usingDict(dctx: number, dst: number, cap: number, src: number, n: number, dict: number, dictLen: number): number;
  _ZSTD_isError(code: number): number;
}

/**
 * Decoding straight through the wasm exports, with one decoder context and one input and one output area
 * in the wasm heap for the whole process. Why: the library's decompress() makes a context, mallocs both
 * areas and returns a new array per call; on a protocol-1 send of a zstd filesystem (one call per 128 KiB
 * extent) that garbage and set-up were a sixth of the decoding's cost (docs/performance.md).
 */
interface Direct {
  m: ZstdModule;
  dctx: number;
  src: number;
  dst: number;
}

/** Largest frame and output the direct decoder takes (a btrfs extent: at most 128 KiB each); bigger ones go through decompress(). */
const DIRECT_MAX = 1 << 20;

let direct: Direct | undefined;

/**
 * zstd frames decoded by the system's libzstd through our addon (native-addon.ts): 2–3× the WebAssembly
 * decoder on btrfs's 128 KiB extents, straight into the caller's buffer (no copies into and out of the
 * wasm heap). Taken only when it decodes a known frame to the known bytes (and reports a bad one);
 * BTRFS_TS_NATIVE=off or BTRFS_TS_ZSTD=wasm leave it out.
 */
let addonDecode: ((frame: Uint8Array, out: Uint8Array) => number) | undefined;

/** "btrfs-ts " × 32 as `zstd -1 --no-check` frames it, for the probe below. */
const PROBE_FRAME = new Uint8Array([40, 181, 47, 253, 0, 72, 133, 0, 0, 72, 98, 116, 114, 102, 115, 45, 116, 115, 32, 1, 0, 20, 84, 203, 17]);

/** The addon's zstd decoder if it decodes PROBE_FRAME right (zero-filling after it) and throws on a broken frame. */
export function checkAddonZstd(addon: NativeAddon | undefined): ((frame: Uint8Array, out: Uint8Array) => number) | undefined {
  const f = addon?.zstdDecompress;
  if (typeof f !== 'function' || process.env['BTRFS_TS_ZSTD'] === 'wasm') return undefined;
  try {
    const out = new Uint8Array(300).fill(0xee);
    const want = new TextEncoder().encode('btrfs-ts '.repeat(32));
    if (f(PROBE_FRAME, out) !== want.length || !want.every((b, i) => out[i] === b) || out.subarray(want.length).some((b) => b !== 0)) return undefined;
    try {
      f(PROBE_FRAME.subarray(0, 12), out);
      return undefined; // a truncated frame must not decode
    } catch {
      return f;
    }
  } catch {
    return undefined; // no libzstd.so.1 on this system (ZSTD_UNAVAILABLE), or another failure
  }
}

/** Which way zstd frames are decoded after initZstd: libzstd through our addon ('native'), the wasm exports ('direct') or the library's decompress(). */
export function zstdDecoder(): 'native' | 'direct' | 'library' {
  return addonDecode ? 'native' : direct ? 'direct' : 'library';
}

/** The direct decoder if the library's module has the exports it needs, else undefined (decompress() is used). */
function directDecoder(): Direct | undefined {
  try {
    const req = createRequire(import.meta.url);
    const m = (req(join(dirname(req.resolve('@bokuweb/zstd-wasm')), 'module.js')) as { Module?: Partial<ZstdModule> }).Module;
    if (!m || !(m.HEAPU8 instanceof Uint8Array)) return undefined;
    for (const f of ['_malloc', '_free', '_ZSTD_createDCtx', '_ZSTD_decompress_usingDict', '_ZSTD_isError'] as const) if (typeof m[f] !== 'function') return undefined;
    const mod = m as ZstdModule;
    const dctx = mod._ZSTD_createDCtx();
    const src = mod._malloc(DIRECT_MAX);
    const dst = mod._malloc(DIRECT_MAX);
    if (!dctx || !src || !dst) return undefined;
    return { m: mod, dctx, src, dst };
  } catch {
    return undefined; // another layout of the library: its public decompress() still works
  }
}

function requireInit(): ZstdWasm {
  if (lib === null) throw new CodecError('ZSTD_NOT_INITIALIZED', 'zstd: call initCodecs() (await) before using zstd');
  return lib;
}

/**
 * Decodes the frame at the start of `data` (padding after it ignored) into exactly `ramBytes` bytes,
 * zero-filled past the decoded content. Returns the output and how many bytes the frame produced.
 * `into` (at least ramBytes long): the output is written there (a view of it is returned) instead of
 * into a new array.
 */
export function zstdDecompressExtent(data: Uint8Array, ramBytes: number, into?: Uint8Array): { out: Uint8Array; decodedLen: number } {
  // the addon's decoder needs no library (initZstd with decodeOnly)
  if (!addonDecode) requireInit();
  const info = zstdFrameInfo(data);
  if (info.dictId !== 0) throw new CodecError('ZSTD_DICT', `zstd: frame needs dictionary ${info.dictId}`, { offset: 5 });
  if (info.contentSize !== undefined && info.contentSize > ramBytes) {
    throw new CodecError('DECODED_TOO_LONG', `zstd: frame content size ${info.contentSize} exceeds ${ramBytes} bytes`, { offset: 5 });
  }
  const a = addonDecode;
  if (a) {
    const reuse = into !== undefined && into.length >= ramBytes;
    const out = reuse ? into.subarray(0, ramBytes) : new Uint8Array(ramBytes);
    try {
      // `out` holds ramBytes: a frame decoding to more fails inside zstd (Destination buffer is too small)
      return { out, decodedLen: a(data.subarray(0, info.frameLen), out) };
    } catch (e) {
      throw new CodecError('ZSTD_CORRUPT', `zstd: frame does not decode (${(e as Error).message}); or decodes to more than ${ramBytes} bytes`, { cause: e });
    }
  }
  const d = direct;
  if (d && info.frameLen <= DIRECT_MAX && ramBytes <= DIRECT_MAX) {
    d.m.HEAPU8.set(data.subarray(0, info.frameLen), d.src);
    // the output area holds ramBytes: a frame decoding to more fails inside zstd (dstSize_tooSmall)
    const r = d.m._ZSTD_decompress_usingDict(d.dctx, d.dst, ramBytes, d.src, info.frameLen, 0, 0);
    if (d.m._ZSTD_isError(r)) throw new CodecError('ZSTD_CORRUPT', `zstd: frame does not decode (zstd error ${r < 0 ? -r : r}); or decodes to more than ${ramBytes} bytes`);
    const n = r >>> 0;
    const reuse = into !== undefined && into.length >= ramBytes;
    const out = reuse ? into.subarray(0, ramBytes) : new Uint8Array(ramBytes);
    out.set(d.m.HEAPU8.subarray(d.dst, d.dst + n));
    if (reuse && n < ramBytes) out.fill(0, n); // a new array is zeros already
    return { out, decodedLen: n };
  }
  const zstd = requireInit();
  let decoded: Uint8Array;
  try {
    // The library sizes its output from Frame_Content_Size, else from defaultHeapSize; capping that
    // at ramBytes makes an over-long frame fail inside zstd instead of allocating freely.
    decoded = zstd.decompress(data.subarray(0, info.frameLen), { defaultHeapSize: Math.max(ramBytes, 1) });
  } catch (e) {
    throw new CodecError('ZSTD_CORRUPT', `zstd: frame does not decode (${(e as Error).message}); or decodes to more than ${ramBytes} bytes`, { cause: e });
  }
  if (decoded.length > ramBytes) throw new CodecError('DECODED_TOO_LONG', `zstd: decodes to ${decoded.length} > ${ramBytes} bytes`);
  if (decoded.length === ramBytes) return { out: decoded, decodedLen: ramBytes };
  const out = new Uint8Array(ramBytes);
  out.set(decoded);
  return { out, decodedLen: decoded.length };
}

/** One zstd frame at `level`, with a window the kernel can decode (input is at most 128 KiB). */
export function zstdCompress(data: Uint8Array, level: number = ZSTD_BTRFS_DEFAULT_LEVEL): Uint8Array {
  const zstd = requireInit();
  if (!Number.isInteger(level) || level < ZSTD_BTRFS_MIN_LEVEL || level > ZSTD_BTRFS_MAX_LEVEL) {
    throw new CodecError('ZSTD_LEVEL', `zstd: level ${level} outside ${ZSTD_BTRFS_MIN_LEVEL}..${ZSTD_BTRFS_MAX_LEVEL}`);
  }
  if (level === 0) level = ZSTD_BTRFS_DEFAULT_LEVEL; // the kernel's "0 = default"
  // One-shot compression records the content size and shrinks the window to the input, so a
  // <= 128 KiB input yields a single-segment frame whose window fits the kernel's 2^17 limit.
  const frame = zstd.compress(data, level);
  const info = zstdFrameInfo(frame);
  if (!zstdWindowOk(info) || info.frameLen !== frame.length) {
    throw new CodecError('ZSTD_WINDOW', `zstd: produced a frame with window ${info.windowSize} the kernel cannot decode`);
  }
  return frame;
}
