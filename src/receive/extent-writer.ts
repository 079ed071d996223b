import {
  BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_ZSTD, type BtrfsCompressType, btrfsLzoCompress, compressExtent, zlibCompress, zstdCompress,
} from '../compress/index.js';
import { U64_MAX, BTRFS_COMPRESS_NONE } from '../image/structs/constants.js';
import { canCompress, dropFileExtents, writeDataExtent, writeInlineExtent } from '../image/write/file-data.js';
import type { Filesystem } from '../image/write/filesystem.js';
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

  /** Reused for sector-completed and zero-padded copies; the device and the checksums consume them at once. */
  private edgeBuf = new Uint8Array(0);

  /** The image's sector size (a field: a getter made a new bigint each of the ~10 times per extent it is read). */
  protected readonly ss: bigint;

  constructor(protected readonly fs: Filesystem, protected readonly opts: WriterOptions = {}) {
    this.ss = BigInt(fs.sectorsize);
  }

  /** `bare`: the file is known to have no extent items (nothing to drop). */
  protected writeInline(root: bigint, ino: bigint, data: Uint8Array, bare = false): void {
    const fs = this.fs;
    if (!bare) dropFileExtents(fs, root, ino, 0n, U64_MAX);
    // inline data only needs to come out smaller, not a sector smaller
    const cc = this.opts.compress && canCompress(fs, root, ino) ? compressInline(this.opts.compress, data, fs.sectorsize) : null;
    if (cc) writeInlineExtent(fs, root, ino, cc, this.opts.compress!.type, data.length);
    else writeInlineExtent(fs, root, ino, data);
    this.stats.inline++;
    this.stats.bytes += data.length;
  }

  /** Writes sector-aligned data at an aligned offset into fresh extents (the range must be free). */
  /** `sectorCrcs`: raw CRC32C of buf's first sectors (crc32c-combine.ts), for its checksums. */
  protected writeAligned(root: bigint, ino: bigint, offset: bigint, buf: Uint8Array, sectorCrcs?: Uint32Array): void {
    const fs = this.fs;
    // (the compress mount option leaves NODATACOW and NODATASUM files alone: btrfs_inode_can_compress)
    if (!this.opts.compress || !canCompress(fs, root, ino)) {
      writeDataExtent(fs, root, ino, offset, buf, BTRFS_COMPRESS_NONE, buf.length, sectorCrcs);
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
   * `data` at `start`, completed to the whole sectors [aStart, aEnd) it touches: the file's bytes before and
   * after it (read-modify-write), zeros past EOF. `own`: data is the writer's own buffer (gather or settled
   * copy), whose bytes after it are free — a write that starts on a sector and ends the file (a whole file's
   * last extent, the usual case) gets its zeros there instead of a copy of up to 8 MiB into another buffer.
   */
  protected wholeSectors(root: bigint, ino: bigint, data: Uint8Array, start: bigint, aStart: bigint, aEnd: bigint, isize: bigint, own: boolean): Uint8Array {
    const fs = this.fs;
    const len = Number(aEnd - aStart);
    const end = start + BigInt(data.length);
    // the file's bytes after the data, up to the sector's end
    const tailEnd = end < isize ? (aEnd < isize ? aEnd : isize) : end;
    if (own && aStart === start && tailEnd === end && data.byteOffset + len <= data.buffer.byteLength) {
      const buf = new Uint8Array(data.buffer, data.byteOffset, len);
      buf.fill(0, data.length);
      return buf;
    }
    const buf = this.scratch(len);
    const at = Number(start - aStart);
    if (at > 0) buf.set(readRange(fs, root, ino, aStart, at), 0);
    buf.set(data, at);
    const e = at + data.length;
    if (tailEnd > end) buf.set(readRange(fs, root, ino, end, Number(tailEnd - end)), e);
    // only the bytes nothing was copied to are zeroed (all of them, each time, was a second pass over up to 8 MiB)
    buf.fill(0, e + Number(tailEnd - end));
    return buf;
  }

  /**
   * A buffer of `len` bytes holding anything, valid until the next call (the caller writes every byte):
   * fresh buffers per extent were a quarter of a zstd stream's allocation volume, and allocation volume
   * is what drives V8's full GCs.
   */
  protected scratch(len: number): Uint8Array {
    if (this.edgeBuf.length < len) this.edgeBuf = new Uint8Array(Math.max(len, 256 << 10));
    return this.edgeBuf.subarray(0, len);
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
