import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * btrfs-ts's own optional native addon (native/btrfs-ts-native.c, built at install by
 * scripts/build-native.mjs into build/): CRC32C on three lanes of the CPU's crc32 instruction (~20 GB/s
 * here against @node-rs/crc32's ~4–6), the CRCs of every 4 KiB sector of a buffer in one call, and zstd
 * decoding through the system's libzstd (2–3× our WebAssembly's), and stream files read through mappings
 * instead of read(2) (io/mapped-input.ts). Each function is present only where it
 * works (x86-64 with SSE4.2; libzstd.so.1 found), and the callers (crc32c.ts, compress/zstd.ts) check each
 * against their portable engine on known values before they use it. BTRFS_TS_NATIVE=off leaves it unloaded.
 */
export interface NativeAddon {
  /** The raw CRC32C register `crc` (no inversions) carried over `data`. */
  crc32cRaw?: (data: Uint8Array, crc: number) => number;
  /** out[i] = raw CRC32C (seed 0) of data[i*size, (i+1)*size), for the whole pieces `out` has room for. */
  crc32cPiecesRaw?: (data: Uint8Array, size: number, out: Uint32Array) => void;
  /** One zstd frame (exactly its bytes) decoded into `out`, the rest of `out` zero-filled; its decoded length. Throws (code 'ZSTD') on a bad frame or one longer than `out`. */
  zstdDecompress?: (frame: Uint8Array, out: Uint8Array) => number;
  /** Bytes [offset, offset + length) of the open file `fd` (offset page-aligned) as a private mapping; unmapped when collected. Throws (code ENODEV, ...) when it cannot be mapped. */
  mapFile?: (fd: number, offset: number, length: number) => ArrayBuffer;
  /** Gives back the whole pages inside `view` of a mapping (MADV_DONTNEED): read again, they come from the file. */
  dropPages?: (view: Uint8Array) => void;
  /** copy_file_range(2) of `length` bytes from `fdIn` at `offIn` to `fdOut` at `offOut`: the bytes copied (fewer at the input's end). Throws (code EXDEV, EINVAL, ...) where the kernel cannot. */
  copyFileRange?: (fdIn: number, offIn: number, fdOut: number, offOut: number, length: number) => number;
  /** A thread checking the CRC32C of the send stream's commands in the file `fd` from `offset` (io/crc-ahead.ts): its 16 bytes of shared words, or undefined where it could not start. */
  crcAhead?: (fd: number, offset: number, maxLen: number) => ArrayBuffer | undefined;
  /** The data-fill thread of a send (send/data-fill-native.ts): `shared` its ring, `arena` the output, `layout` where the ring's parts are. A handle, or undefined where it could not start (`path` does not open). Linux. */
  fillStart?: (shared: Uint8Array, arena: Uint8Array, path: string, layout: Int32Array) => object | undefined;
  /** Wakes the fill thread if it sleeps. */
  fillWake?: (handle: object) => void;
  /** Blocks while the ring's DONE word is `done`, at most `ms` milliseconds. */
  fillWait?: (handle: object, done: number, ms: number) => void;
  /** Stops the fill thread after its job in hand and joins it (once). */
  fillStop?: (handle: object) => void;
  /**
   * An extent's first 4096 bytes read from `fd` at `position` into `room` and checked against the crc32c
   * `sum`; with `zstd`, its frame (the extent `len` bytes long) walked into `out` (native/extent-head.c):
   * -1 the read failed, 0 mismatch, 1 good (and walked), 2 good, the frame left to zstdFrameInfo.
   */
  extentHead?: (fd: number, position: number, room: Uint8Array, sum: Uint8Array, len: number, zstd: boolean, out: Float64Array) => number;
  /** Whether parseTreeBlock's structure checks pass on `block` (item data layout of a leaf; key order), native/leaf-scan.c. */
  treeBlockOk?: (block: Uint8Array, nodesize: number, level: number, nritems: number) => boolean;
  /**
   * Two leaves' items merged by key from slots i and j: out[0], out[1] where each stopped; out[2 + 2k],
   * out[3 + 2k] the k-th differing item's slots (-1: not on that side). Returns k, or -1 (a slot or item
   * outside its block: nothing done).
   */
  leafMerge?: (a: Uint8Array, i: number, na: number, b: Uint8Array, j: number, nb: number, out: Int32Array) => number;
}

/** Where the build puts it: the package's build/ (this module is src/util/ or dist/util/). */
export const NATIVE_ADDON_PATH = fileURLToPath(new URL('../../build/btrfs-ts-native.node', import.meta.url));

/** The addon from `load()`, or undefined when it is off, absent or fails to load (another ABI, CPU, ...). */
export function loadNativeAddon(load: () => unknown = () => createRequire(import.meta.url)(NATIVE_ADDON_PATH)): NativeAddon | undefined {
  if (process.env['BTRFS_TS_NATIVE'] === 'off') return undefined;
  try {
    const m = load() as NativeAddon | undefined;
    return m && typeof m === 'object' ? m : undefined;
  } catch {
    return undefined;
  }
}

export const nativeAddon: NativeAddon | undefined = loadNativeAddon();
