import { ImageError } from '../errors.js';
import { decompressExtent } from '../image/read/decompress.js';
import { extentCopies, rawCrcsKnown, rawSectorCrcs, readVerified, type SectorCrcs } from '../image/read/file-data.js';
import type { ImageReader } from '../image/read/image.js';
import type { TreeRoot } from '../image/read/tree.js';
import { alignedBytes } from '../util/aligned.js';
import { placeInto } from '../util/bytes.js';
import { CRC_SECTOR, crc32cCombineSectors, crc32cCombineSums } from '../util/crc32c-combine.js';
import type { DataFill } from './data-fill.js';
import type { ExtentAhead } from './extent-ahead.js';
import type { ZstdFrameInfo } from '../compress/zstd.js';
import { readHead } from './extent-head.js';
import { BTRFS_COMPRESS_NONE, BTRFS_COMPRESS_ZSTD, BTRFS_FILE_EXTENT_INLINE, type BtrfsFileExtentItem } from '../image/structs.js';

/** Where one file extent item is, for reading its bytes and naming it in errors. */
export interface ExtentRef {
  img: ImageReader;
  csumRoot: TreeRoot | undefined;
  /** Checksums are verified unless the inode is NODATASUM. */
  verify: boolean;
  /** The item's key offset (file offset where it starts). */
  keyOffset: bigint;
  fe: BtrfsFileExtentItem;
  what: string;
  /**
   * The send's read buffer: extent bytes are read into it instead of a new array per read (fewer and
   * smaller garbage collections). Commands built from it are valid until the next command is asked
   * for — the encoder copies each one out before that.
   */
  scratch?: Scratch;
  /** Compressed extents read (and decoded) ahead on another thread: a full send (extent-ahead.ts). */
  ahead?: ExtentAhead;
  /** Data read into the output on another thread, behind the send: a full send to an arena (data-fill.ts). */
  fill?: DataFill;
}

/**
 * A read buffer that grows to the largest read asked of it, and one for decompressed extents; page-aligned
 * (util/aligned.ts: a read into a fresh large Buffer, 16 bytes past a page boundary, copied at a quarter speed).
 */
export class Scratch {
  private plainBuf: Uint8Array = new Uint8Array(0);

  /** `buf`: where reads go first (a slot of extent-ahead.ts); a larger read takes a new buffer. */
  constructor(private buf: Uint8Array = new Uint8Array(0)) {}

  get(len: number): Uint8Array {
    if (this.buf.length < len) this.buf = alignedBytes(Math.max(len, WINDOW + 64 * 1024));
    return this.buf;
  }

  /** Where an extent is decompressed to (the compressed bytes are in the read buffer meanwhile). */
  plain(len: number): Uint8Array {
    if (this.plainBuf.length < len) this.plainBuf = alignedBytes(Math.max(len, 128 * 1024));
    return this.plainBuf;
  }
}

/**
 * File bytes, and their raw CRC32C (seed 0) where the verified sector checksums give it without a pass
 * (whole 4 KiB sectors of a checksummed extent, readVerified): the encoder combines it into the command CRC.
 */
export interface Piece {
  data: Uint8Array;
  crc?: number;
  /** zstdFrameInfo(data), where it was walked already (extent-head.ts): the planner's walk. */
  frame?: ZstdFrameInfo;
}

/** The raw CRC of data[at, at + len) of a verified read, when its sectors' CRCs are known and it covers whole ones. */
function pieceCrc(crcs: SectorCrcs, at: number, len: number): number | undefined {
  const raw = crcs.raw;
  if (!raw || at % CRC_SECTOR !== 0 || len % CRC_SECTOR !== 0 || (at + len) / CRC_SECTOR > raw.length) return undefined;
  return crc32cCombineSectors(0, raw, at / CRC_SECTOR, (at + len) / CRC_SECTOR);
}

/**
 * The compressed (or inline) bytes as stored, checksum-verified: what an ENCODED_WRITE carries. `into`:
 * where to read them (the output, StreamEncoder.dataRoom) instead of the scratch buffer.
 */
export async function storedBytes(x: ExtentRef, into?: Uint8Array): Promise<Piece> {
  if (x.fe.type === BTRFS_FILE_EXTENT_INLINE) return { data: x.fe.inline_data! };
  if (x.fe.disk_num_bytes > 1n << 27n) throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${x.what}: disk_num_bytes ${x.fe.disk_num_bytes} is implausibly large`);
  const len = Number(x.fe.disk_num_bytes);
  const got = await x.ahead?.claim(x);
  if (got) return { data: got.stored, crc: got.sums && pieceCrc({ raw: rawSectorCrcs(x.img, got.sums) }, 0, len) };
  const behind = into && await readBehind(x, x.fe.disk_bytenr, len, into, true);
  if (behind) return behind;
  const crcs: SectorCrcs = {};
  const data = await readVerified(x.img, x.csumRoot, x.fe.disk_bytenr, len, x.verify, x.what, into ?? x.scratch?.get(len), crcs);
  return { data, crc: pieceCrc(crcs, 0, len) };
}

/**
 * Leaves logical [logical, logical + len) to be read into `room` behind the send (data-fill.ts) where it
 * can be: checksummed, every sector with its checksum, crc32c with 4 KiB sectors — the command CRC is
 * combined from those checksums before the bytes are there. `head`: the first sector is read (and
 * checked) now, for what looks at it before the command goes out (an ENCODED_WRITE's zstd frame header,
 * planEncodedWrite). Undefined: the caller reads it in line.
 */
async function readBehind(x: ExtentRef, logical: bigint, len: number, room: Uint8Array, head = false): Promise<Piece | undefined> {
  const fill = x.fill;
  if (!fill || !x.verify || !fill.takes(room, len)) return undefined;
  const { copies, sums } = await extentCopies(x.img, x.csumRoot, logical, len, true, x.what);
  if (!sums || sums.have.includes(0) || !rawCrcsKnown(x.img)) return undefined;
  const data = room.subarray(0, len);
  const piece: Piece = { data, crc: crc32cCombineSums(0, sums.sums, len / CRC_SECTOR) };
  const skip = head ? CRC_SECTOR : 0;
  if (head) {
    const got = await readHead(x, copies[0]!, data, len, sums, x.fe.compression === BTRFS_COMPRESS_ZSTD);
    if (!got) return undefined;
    if (got.frame) piece.frame = got.frame;
    if (len === skip) return piece;
  }
  await fill.post(data.subarray(skip), len - skip, copies.map((c) => c + BigInt(skip)), sums.sums.subarray(4 * (skip / CRC_SECTOR)), async () => {
    const got = await readVerified(x.img, x.csumRoot, logical, len, true, x.what, data);
    placeInto(data, got);
  });
  return piece;
}

/** The decompressed content of a compressed or inline extent (ram_bytes long). */
async function plainExtent(x: ExtentRef): Promise<Uint8Array> {
  if (x.fe.compression === BTRFS_COMPRESS_NONE) return (await storedBytes(x)).data;
  if (x.fe.ram_bytes > 1n << 27n) throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${x.what}: ram_bytes ${x.fe.ram_bytes} is implausibly large`);
  const ram = Number(x.fe.ram_bytes);
  const got = await x.ahead?.claim(x);
  if (got?.decoded) return got.decoded;
  return decompressExtent(x.fe.compression, (await storedBytes(x)).data, ram, x.img.sectorsize, x.what, x.scratch?.plain(ram));
}

/** Bytes read from disk at once for a plain extent: WRITE pieces are cut from one verified read. */
const WINDOW = 1 << 20;

/**
 * File bytes [pos, pos + len) that this item maps, decompressed, as consecutive pieces of `piece` bytes
 * (the last one shorter); past the item's data (an inline extent shorter than its sector) they read as
 * zeros, as the kernel's page cache gives them. A compressed or inline extent is decoded once, a plain one
 * read in windows of about 1 MiB (checksums verified per window): pieces are views, not copies.
 * `room`: where the output will hold a piece of `n` bytes (its command's StreamEncoder.dataRoom); with a
 * DataFill, a plain extent's whole-sector pieces are read there, behind the send where they can be.
 */
export async function* filePieces(x: ExtentRef, pos: bigint, len: number, piece: number, room?: (n: number) => Uint8Array | undefined): AsyncGenerator<Piece> {
  if (x.fe.type === BTRFS_FILE_EXTENT_INLINE || x.fe.compression !== BTRFS_COMPRESS_NONE) {
    const plain = await plainExtent(x);
    const start = Number(x.fe.type === BTRFS_FILE_EXTENT_INLINE ? pos - x.keyOffset : x.fe.offset + pos - x.keyOffset);
    for (let done = 0; done < len; done += piece) {
      const n = Math.min(piece, len - done);
      const a = start + done;
      if (a + n <= plain.length) {
        yield { data: plain.subarray(a, a + n) };
      } else {
        const out = new Uint8Array(n);
        if (a < plain.length) out.set(plain.subarray(a));
        yield { data: out };
      }
    }
    return;
  }
  const rel = x.fe.offset + pos - x.keyOffset;
  if (rel + BigInt(len) > x.fe.disk_num_bytes) {
    throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${x.what}: range ${x.fe.offset}+${x.fe.num_bytes} exceeds disk_num_bytes ${x.fe.disk_num_bytes}`);
  }
  const ss = x.img.sectorsize;
  // checksums cover whole sectors: reads start and end on sector boundaries, pieces are cut from inside
  const intoRoom = room && x.fill ? room : undefined;
  const window = intoRoom ? piece : Math.max(1, Math.floor(WINDOW / piece)) * piece;
  for (let done = 0; done < len; done += window) {
    const n = Math.min(window, len - done);
    const at = rel + BigInt(done);
    const lead = Number(at % BigInt(ss));
    const readLen = Math.ceil((lead + n) / ss) * ss;
    const crcs: SectorCrcs = {};
    const r = intoRoom && readLen === n ? intoRoom(n) : undefined;
    if (r) {
      const logical = x.fe.disk_bytenr + at;
      const behind = await readBehind(x, logical, n, r);
      if (behind) {
        yield behind;
      } else {
        const data = await readVerified(x.img, x.csumRoot, logical, n, x.verify, x.what, r, crcs);
        yield { data: data.subarray(0, n), crc: pieceCrc(crcs, 0, n) };
      }
      continue;
    }
    const data = await readVerified(x.img, x.csumRoot, x.fe.disk_bytenr + at - BigInt(lead), readLen, x.verify, x.what, x.scratch?.get(readLen), crcs);
    for (let p = 0; p < n; p += piece) {
      const m = Math.min(n, p + piece) - p;
      yield { data: data.subarray(lead + p, lead + p + m), crc: pieceCrc(crcs, lead + p, m) };
    }
  }
}
