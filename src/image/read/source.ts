import type { BlockDevice } from '../device.js';
import type { DeviceRegions } from './chunk-map.js';

/**
 * What the reader needs from an image: positional reads, nothing else. Async so a file-backed source can
 * use non-blocking I/O; the writer's synchronous BlockDevice adapts trivially (fromBlockDevice).
 */
export interface ImageSource {
  /**
   * Read `len` bytes at `offset`; bytes past the end of the image read as zeros. With `into` (at least
   * `len` long) a source may read into it and return a view of it instead of a new array — a caller that
   * passes one must use the returned array and must not keep it past its next use of `into`.
   */
  read(offset: bigint, len: number, into?: Uint8Array): Promise<Uint8Array>;
  /** Size of the image in bytes, when known (used to skip superblock mirrors past the end). */
  size?(): bigint;
  /** The file the bytes come from, when they do: another thread may open it to read in parallel (send). */
  readonly path?: string;
  /** Its open descriptor, where `read` is a pread of it: the send's addon reads a first sector through it (send/extent-head.ts). */
  readonly fd?: number;
  /** The other devices of a multi-device filesystem, where they were given (io/device-set.ts); read through this source. */
  readonly devices?: DeviceRegions;
}

export function fromBlockDevice(dev: BlockDevice): ImageSource {
  return {
    read: async (offset, len) => dev.read(offset, len),
    size: () => dev.size(),
  };
}

/** An in-memory image (tests: corrupt a copy of an image without touching the file). */
export function fromBytes(bytes: Uint8Array): ImageSource {
  return {
    read: async (offset, len) => {
      const out = new Uint8Array(len);
      const start = Number(offset);
      if (start < bytes.length) out.set(bytes.subarray(start, Math.min(bytes.length, start + len)));
      return out;
    },
    size: () => BigInt(bytes.length),
  };
}
