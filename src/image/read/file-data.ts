import { ImageError } from '../../errors.js';
import {
  BTRFS_COMPRESS_NONE, BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_FILE_EXTENT_PREALLOC, BTRFS_FILE_EXTENT_REG,
  BTRFS_INODE_NODATASUM, csumAlgo, decodeFileExtentItem, firstBadSector,
} from '../structs.js';
import { btrfsCsumFromRaw, CRC_SECTOR } from '../../util/crc32c-combine.js';
import { U64_MAX, BTRFS_CSUM_TYPE_CRC32 } from '../structs/constants.js';
import { decompressExtent } from './decompress.js';
import type { ImageReader } from './image.js';
import { type Location, statInode } from './inodes.js';
import { type SectorCsums, sectorCsums } from './sector-csums.js';
import type { TreeRoot } from './tree.js';

/** Largest piece read or yielded at once: memory stays bounded whatever the file or extent size. */
const PIECE = 1 << 20;

export interface ReadFileOptions {
  /** Verify data checksums against the csum tree (default true). */
  verify?: boolean;
  /** Refuse (IMAGE_SPARSE_TOO_BIG) a file whose zeros (holes, prealloc) add up to more than this. */
  maxZeros?: bigint;
}

function* holeRun(n: bigint): Generator<FileSegment> {
  if (n > 0n) yield { zeros: n };
}

/** Filled by readVerified: the raw CRC32C (seed 0, no inversion) of each 4 KiB sector read, where it is known. */
export interface SectorCrcs {
  raw?: Uint32Array;
}

/**
 * Reads logical [logical, logical+len) of a data extent and checks every sector's checksum. On DUP data a
 * copy that fails is replaced by the other; a sector without a checksum fails unless `needSums` is false.
 * `into`: a scratch buffer the source may read into (see ImageSource.read): the result may be a view of it.
 * `crcs`: on a crc32c image with 4 KiB sectors whose sums were checked, `crcs.raw` gets each sector's raw
 * CRC — the stored checksum the data was just found to match, turned raw (crc32c-combine.ts), so a send
 * stream's command CRC over these bytes needs no second pass; otherwise it is left undefined.
 */
export async function readVerified(
  img: ImageReader, csumRoot: TreeRoot | undefined, logical: bigint, len: number, needSums: boolean, what: string, into?: Uint8Array,
  crcs?: SectorCrcs,
): Promise<Uint8Array> {
  if (crcs) crcs.raw = undefined;
  const { copies, sums } = await extentCopies(img, csumRoot, logical, len, needSums, what);
  const algo = csumAlgo(img.superblock.csum_type);
  const cs = algo.size;
  const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
  const problems: string[] = [];
  const ss = img.sectorsize;
  // the raw CRCs come out of the check itself (firstBadSector), for whole 4 KiB sectors of a crc32c image
  const raw = crcs && sums && rawCrcsKnown(img) && len % CRC_SECTOR === 0 ? new Uint32Array(len / CRC_SECTOR) : undefined;
  for (const phys of copies) {
    const data = await img.src.read(phys, len, into);
    const i = sums ? firstBadSector(algo, data, len, ss, sums.sums, sums.have, raw) : -1;
    if (i < 0) {
      if (crcs) crcs.raw = raw;
      return data;
    }
    const at = logical + BigInt(i * ss);
    if (!sums!.have[i]) {
      problems.push(`no data checksum for sector at logical ${at}`);
    } else {
      const got = new Uint8Array(cs);
      algo.digestInto(data.subarray(i * ss, Math.min(len, (i + 1) * ss)), got, 0);
      problems.push(`data checksum mismatch at logical ${at} (stored ${hex(sums!.sums.subarray(i * cs, (i + 1) * cs))}, computed ${hex(got)})`);
    }
  }
  throw new ImageError('IMAGE_DATA_CSUM', `${what}: ${problems.join('; ')}`, { offset: logical, command: 'btrfs_csum_item' });
}

/** Whether a sector's raw CRC follows from its checksum: a crc32c image with 4 KiB sectors. */
export function rawCrcsKnown(img: ImageReader): boolean {
  return img.superblock.csum_type === BTRFS_CSUM_TYPE_CRC32 && img.sectorsize === CRC_SECTOR;
}

/**
 * The raw CRC32C of each sector whose stored checksums `sums` (back to back) the data was found to match:
 * on a crc32c image with 4 KiB sectors, else undefined (see SectorCrcs).
 */
export function rawSectorCrcs(img: ImageReader, sums: Uint8Array): Uint32Array | undefined {
  if (!rawCrcsKnown(img)) return undefined;
  const raw = new Uint32Array(sums.length / 4);
  const dv = new DataView(sums.buffer, sums.byteOffset, sums.byteLength);
  for (let i = 0; i < raw.length; i++) raw[i] = btrfsCsumFromRaw(dv.getUint32(i * 4, true)); // the same XOR turns it back
  return raw;
}

/** Where a data extent's bytes are (each copy's physical offset) and, when they are verified, their checksums. */
export async function extentCopies(img: ImageReader, csumRoot: TreeRoot | undefined, logical: bigint, len: number, verify: boolean, what: string): Promise<{ copies: bigint[]; sums?: SectorCsums }> {
  const copies = img.chunks.map(logical, len, what);
  if (!verify) return { copies };
  return { copies, sums: await sectorCsums(img, csumRoot, logical, len, csumAlgo(img.superblock.csum_type).size) };
}

/** The largest file size the kernel allows (MAX_LFS_FILESIZE): an i_size beyond it cannot be read back. */
export const MAX_FILE_SIZE = (1n << 63n) - 1n;

/** A piece of a file: bytes, or a run of zeros (a hole, a prealloc extent, the tail past the last extent). */
export type FileSegment = { data: Uint8Array } | { zeros: bigint };

/** One read-only buffer of zeros, handed out (as subarrays) for every hole: holes allocate nothing. */
const ZERO_PIECE = new Uint8Array(PIECE);

function* zeroChunks(n: bigint): Generator<Uint8Array> {
  while (n > 0n) {
    const k = n > BigInt(PIECE) ? PIECE : Number(n);
    yield ZERO_PIECE.subarray(0, k);
    n -= BigInt(k);
  }
}

/**
 * A file's content as chunks of at most 1 MiB, exactly `size` bytes long: inline, regular, prealloc
 * (zeros), holes (zeros, explicit or implied by NO_HOLES) and compressed extents, including extents
 * referenced partially (offset/num_bytes into a larger on-disk extent). Zero chunks are views of one
 * shared buffer: consumers must not modify what they are given.
 */
export async function* readFile(img: ImageReader, loc: Location, opts: ReadFileOptions = {}): AsyncGenerator<Uint8Array> {
  let zeros = 0n;
  for await (const seg of fileSegments(img, loc, opts)) {
    if ('data' in seg) {
      yield seg.data;
      continue;
    }
    zeros += seg.zeros;
    if (opts.maxZeros !== undefined && zeros > opts.maxZeros) {
      throw new ImageError('IMAGE_SPARSE_TOO_BIG', `inode ${loc.ino} in subvolume ${loc.root} holds more than ${opts.maxZeros} bytes of holes; not materialised`, { command: 'btrfs_inode_item' });
    }
    yield* zeroChunks(seg.zeros);
  }
}

/**
 * The same content as data pieces and zero runs, so a consumer can leave holes as holes (extract seeks
 * over them) instead of materialising them. The runs are exactly what readFile yields as zeros.
 */
export async function* fileSegments(img: ImageReader, loc: Location, opts: ReadFileOptions = {}): AsyncGenerator<FileSegment> {
  const inode = await statInode(img, loc);
  const size = inode.size;
  if (size > MAX_FILE_SIZE) {
    throw new ImageError('IMAGE_BAD_INODE_SIZE', `inode ${loc.ino} in subvolume ${loc.root} has i_size ${size}, beyond the largest file size ${MAX_FILE_SIZE}`, { command: 'btrfs_inode_item' });
  }
  const needSums = opts.verify !== false && (inode.flags & BTRFS_INODE_NODATASUM) === 0n;
  const tree = await img.tree(loc.root);
  const csumRoot = needSums ? await img.csumTree() : undefined;
  const from = { objectid: loc.ino, type: BTRFS_EXTENT_DATA_KEY, offset: 0n };
  const to = { objectid: loc.ino, type: BTRFS_EXTENT_DATA_KEY, offset: U64_MAX };
  const where = (off: bigint): string => `file extent at offset ${off} of inode ${loc.ino} in subvolume ${loc.root}`;
  let pos = 0n;
  for await (const it of img.trees.iterate(tree, from, to)) {
    const off = it.key.offset;
    if (off >= size) break;
    if (off < pos) throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${where(off)} overlaps the previous extent (ends at ${pos})`, { command: 'btrfs_file_extent_item' });
    if (off > pos) yield* holeRun(off - pos);
    pos = off;
    const fe = decodeFileExtentItem(it.data);
    const clip = (n: bigint): bigint => (pos + n > size ? size - pos : n);
    if (fe.type === BTRFS_FILE_EXTENT_INLINE) {
      let data = fe.inline_data!;
      if (fe.compression !== BTRFS_COMPRESS_NONE && fe.ram_bytes > 1n << 17n) {
        throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${where(off)}: inline extent claims ${fe.ram_bytes} uncompressed bytes`);
      }
      if (fe.compression !== BTRFS_COMPRESS_NONE) data = await decompressExtent(fe.compression, data, Number(fe.ram_bytes), img.sectorsize, where(off));
      const n = clip(BigInt(data.length));
      yield { data: data.slice(0, Number(n)) };
      pos += n;
      continue;
    }
    if (fe.type !== BTRFS_FILE_EXTENT_REG && fe.type !== BTRFS_FILE_EXTENT_PREALLOC) {
      throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${where(off)} has unknown type ${fe.type}`, { command: 'btrfs_file_extent_item' });
    }
    if (fe.encryption !== 0 || fe.other_encoding !== 0) {
      throw new ImageError('IMAGE_UNSUPPORTED_ENCODING', `${where(off)} uses encryption ${fe.encryption} / encoding ${fe.other_encoding}`);
    }
    const want = clip(fe.num_bytes);
    if (fe.type === BTRFS_FILE_EXTENT_PREALLOC || fe.disk_bytenr === 0n) {
      yield* holeRun(want);
    } else if (fe.compression !== BTRFS_COMPRESS_NONE) {
      if (fe.disk_num_bytes > 1n << 27n || fe.ram_bytes > 1n << 27n) {
        throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${where(off)}: compressed extent of ${fe.disk_num_bytes}/${fe.ram_bytes} bytes is implausibly large`);
      }
      if (fe.offset + fe.num_bytes > fe.ram_bytes) {
        throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${where(off)}: range ${fe.offset}+${fe.num_bytes} exceeds ram_bytes ${fe.ram_bytes}`);
      }
      const disk = await readVerified(img, csumRoot, fe.disk_bytenr, Number(fe.disk_num_bytes), needSums, where(off));
      const plain = await decompressExtent(fe.compression, disk, Number(fe.ram_bytes), img.sectorsize, where(off));
      for (let p = 0n; p < want; p += BigInt(PIECE)) {
        const a = Number(fe.offset + p);
        yield { data: plain.slice(a, a + Math.min(PIECE, Number(want - p))) };
      }
    } else {
      if (fe.offset + fe.num_bytes > fe.disk_num_bytes) {
        throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${where(off)}: range ${fe.offset}+${fe.num_bytes} exceeds disk_num_bytes ${fe.disk_num_bytes}`);
      }
      const ss = BigInt(img.sectorsize);
      if (fe.offset % ss !== 0n || fe.disk_bytenr % ss !== 0n) {
        throw new ImageError('IMAGE_BAD_FILE_EXTENT', `${where(off)}: disk_bytenr ${fe.disk_bytenr} / offset ${fe.offset} not sector aligned`);
      }
      for (let p = 0n; p < want; p += BigInt(PIECE)) {
        const n = want - p > BigInt(PIECE) ? PIECE : Number(want - p);
        // Checksums cover whole sectors: read the sector-rounded piece, yield only the wanted bytes.
        const readLen = Number(((BigInt(n) + ss - 1n) / ss) * ss);
        const data = await readVerified(img, csumRoot, fe.disk_bytenr + fe.offset + p, readLen, needSums, where(off));
        yield { data: data.subarray(0, n) };
      }
    }
    pos += want;
  }
  if (pos < size) yield* holeRun(size - pos);
}
