import {
  BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_ZSTD, type BtrfsCompressType, btrfsLzoCompress, compressExtent, zlibCompress, zstdCompress,
} from '../compress/index.js';
import { U64_MAX, BTRFS_COMPRESS_NONE } from '../image/structs/constants.js';
import { dropFileExtents, writeDataExtent, writeInlineExtent } from '../image/write/file-data.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { knownCsums } from './csums.js';
import { inlineExtent, readRange } from './file-read.js';

/** The kernel's default max_inline: small whole files live in the leaf, compressed or not. */
export const MAX_INLINE = 2048;
/** Compressed extents cover at most 128 KiB of file data (BTRFS_MAX_UNCOMPRESSED). */
const COMPRESS_CHUNK = 128 * 1024;

export interface WriterOptions {
  /** Compress plain data as the `compress=` mount option does. */
  compress?: { type: BtrfsCompressType; level?: number };
  /** Bytes of contiguous writes gathered into one extent before it is written (bounded memory). */
  maxBuffer?: number;
  /** Bytes gathered over all files before the oldest file's writes go out (default 16 MiB). */
  maxPending?: number;
}

/**
 * Where file bytes become extents: aligned data into fresh (maybe compressed) extents, small whole files
 * into inline extents, and inline files turned regular when they grow. FileWriter builds the write,
 * truncate and hole-punch semantics on top.
 */
export class ExtentWriter {
  /** Extents written, for the summary. */
  stats = { extents: 0, inline: 0, compressed: 0, bytes: 0 };

  constructor(protected readonly fs: Filesystem, protected readonly opts: WriterOptions = {}) {}

  protected get ss(): bigint {
    return BigInt(this.fs.sectorsize);
  }

  /** `bare`: the file is known to have no extent items (nothing to drop). */
  protected writeInline(root: bigint, ino: bigint, data: Uint8Array, bare = false): void {
    const fs = this.fs;
    if (!bare) dropFileExtents(fs, root, ino, 0n, U64_MAX);
    // inline data only needs to come out smaller, not a sector smaller
    const cc = this.opts.compress ? compressInline(this.opts.compress, data, fs.sectorsize) : null;
    if (cc) writeInlineExtent(fs, root, ino, cc, this.opts.compress!.type, data.length);
    else writeInlineExtent(fs, root, ino, data);
    this.stats.inline++;
    this.stats.bytes += data.length;
  }

  /** Writes sector-aligned data at an aligned offset into fresh extents (the range must be free). */
  /** `sectorCrcs`: raw CRC32C of buf's first sectors (crc32c-combine.ts), for its checksums. */
  protected writeAligned(root: bigint, ino: bigint, offset: bigint, buf: Uint8Array, sectorCrcs?: Uint32Array): void {
    const fs = this.fs;
    if (!this.opts.compress) {
      writeDataExtent(fs, root, ino, offset, buf, BTRFS_COMPRESS_NONE, buf.length, knownCsums(fs, sectorCrcs));
      this.stats.extents++;
      this.stats.bytes += buf.length;
      return;
    }
    const { type, level } = this.opts.compress;
    for (let o = 0; o < buf.length; o += COMPRESS_CHUNK) {
      const piece = buf.subarray(o, Math.min(buf.length, o + COMPRESS_CHUNK));
      const c = compressExtent(type, piece, fs.sectorsize, level);
      if (c) {
        writeDataExtent(fs, root, ino, offset + BigInt(o), c, type, piece.length);
        this.stats.compressed++;
      } else {
        writeDataExtent(fs, root, ino, offset + BigInt(o), piece);
      }
      this.stats.extents++;
      this.stats.bytes += piece.length;
    }
  }

  /**
   * A file whose data lives inline gets other extents only after its inline bytes became a regular first
   * sector — what the kernel does when such a file grows (the page is written back as a normal extent).
   */
  uninline(root: bigint, ino: bigint): void {
    const fs = this.fs;
    const inl = inlineExtent(fs, root, ino);
    if (!inl) return;
    const old = readRange(fs, root, ino, 0n, Number(inl.len));
    dropFileExtents(fs, root, ino, 0n, this.ss);
    this.writeAligned(root, ino, 0n, padTo(old, Number(this.ss)));
  }
}

function compressInline(c: { type: BtrfsCompressType; level?: number }, data: Uint8Array, sectorsize: number): Uint8Array | null {
  const out = c.type === BTRFS_COMPRESS_ZLIB ? zlibCompress(data, c.level)
    : c.type === BTRFS_COMPRESS_ZSTD ? zstdCompress(data, c.level)
    : btrfsLzoCompress(data, sectorsize);
  return out && out.length < data.length ? out : null;
}

export function alignUp(v: bigint, a: bigint): bigint {
  return ((v + a - 1n) / a) * a;
}

export function padTo(data: Uint8Array, len: number): Uint8Array {
  if (data.length === len) return data;
  const out = new Uint8Array(len);
  out.set(data.subarray(0, len));
  return out;
}
