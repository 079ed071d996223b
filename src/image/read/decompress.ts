import { CodecError, ImageError } from '../../errors.js';

/**
 * Bridge to the codec module (src/compress/, owned by the codec engineer). Loaded lazily (its codecs are
 * WebAssembly and node:zlib, which an uncompressed image never needs); a missing module makes compressed
 * extents fail with a clear ImageError. The specifier is a literal so the CLI bundle (scripts/bundle-cli.mjs)
 * includes the module instead of loading a second copy from dist/.
 */
interface CodecApi {
  initCodecs(opts?: { decodeOnly?: boolean }): Promise<void>;
  decompressExtent(type: number, data: Uint8Array, ramBytes: number, sectorsize: number, into?: Uint8Array): Uint8Array;
}

let api: Promise<CodecApi | null> | undefined;

async function load(): Promise<CodecApi | null> {
  try {
    const mod = (await import('../../compress/index.js')) as Partial<CodecApi>;
    if (typeof mod.initCodecs !== 'function' || typeof mod.decompressExtent !== 'function') return null;
    // a reader only decodes: zstd through the addon where it can, without loading the WebAssembly
    await mod.initCodecs({ decodeOnly: true });
    return mod as CodecApi;
  } catch (err) {
    if (err instanceof Error && /Cannot find module|Failed to load|ERR_MODULE_NOT_FOUND/.test(err.message)) return null;
    throw err;
  }
}

/**
 * Decompresses one extent (1 zlib, 2 lzo, 3 zstd) to exactly `ramBytes` bytes; into `into` (a view of it
 * returned) where the codec can, for a caller done with each extent before it decodes the next.
 */
export async function decompressExtent(type: number, data: Uint8Array, ramBytes: number, sectorsize: number, what: string, into?: Uint8Array): Promise<Uint8Array> {
  api ??= load();
  const codecs = await api;
  if (!codecs) {
    throw new ImageError('IMAGE_COMPRESSION_NOT_YET', `${what}: compressed (type ${type}) extents cannot be read yet: the codec module src/compress/index.js is not available`);
  }
  let out: Uint8Array;
  try {
    out = codecs.decompressExtent(type, data, ramBytes, sectorsize, into);
  } catch (err) {
    // Say which extent did not decode; the codec only knows the bytes it was given.
    if (err instanceof CodecError) throw new CodecError(err.code, `${what}: ${err.message}`, { cause: err, offset: err.offset });
    throw err;
  }
  if (out.length < ramBytes) {
    const z = new Uint8Array(ramBytes);
    z.set(out);
    return z;
  }
  return out.length > ramBytes ? out.subarray(0, ramBytes) : out;
}
