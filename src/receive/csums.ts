import { ImageError } from '../errors.js';
import { BTRFS_COMPRESS_NONE, BTRFS_CSUM_TREE_OBJECTID, BTRFS_EXTENT_CSUM_KEY, BTRFS_EXTENT_CSUM_OBJECTID } from '../image/structs/constants.js';
import { addDataCsums, deleteCsums, maxCsumsPerItem } from '../image/write/extents.js';
import { BTRFS_MAX_EXTENT_SIZE, insertFileExtent } from '../image/write/file-data.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { crc32cBtrfs } from '../util/crc32c.js';
import { CRC_SECTOR, btrfsCsumFromRaw } from '../util/crc32c-combine.js';

/**
 * Checksums of the data extent just written at `bytenr` from `bytes` (whole sectors), as addDataCsums
 * stores them — but where `rawSectors` (the raw CRC32C of each whole 4 KiB piece of the bytes, left by
 * the stream parser's CRC check) covers a sector, its checksum is derived from it instead of a second
 * pass over the data. Only for 4 KiB sectors; otherwise, or without them, addDataCsums does it all.
 */
export function storeDataCsums(fs: Filesystem, bytenr: bigint, bytes: Uint8Array, rawSectors: Uint32Array | undefined): void {
  const ss = fs.sectorsize;
  if (rawSectors === undefined || ss !== CRC_SECTOR || rawSectors.length === 0) {
    addDataCsums(fs, bytenr, bytes);
    return;
  }
  const n = Math.ceil(bytes.length / ss);
  deleteCsums(fs, bytenr, BigInt(n * ss));
  const csums = new Uint8Array(n * 4);
  const dv = new DataView(csums.buffer);
  const known = Math.min(n, rawSectors.length);
  for (let i = 0; i < known; i++) dv.setUint32(i * 4, btrfsCsumFromRaw(rawSectors[i]!), true);
  for (let i = known; i < n; i++) {
    let sector = bytes.subarray(i * ss, (i + 1) * ss);
    if (sector.length < ss) {
      const padded = new Uint8Array(ss);
      padded.set(sector);
      sector = padded;
    }
    dv.setUint32(i * 4, crc32cBtrfs(sector), true);
  }
  // split at the item size limit like addDataCsums; contiguous runs are merged at commit
  const max = maxCsumsPerItem(fs.nodesize) * 4;
  const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
  for (let off = 0; off < csums.length; off += max) {
    t.put({ objectid: BTRFS_EXTENT_CSUM_OBJECTID, type: BTRFS_EXTENT_CSUM_KEY, offset: bytenr + BigInt((off / 4) * ss) }, csums.slice(off, off + max));
  }
}

/**
 * writeDataExtent (image/write/file-data.ts) for uncompressed sector-aligned data whose first sectors' raw
 * CRCs are known: the same extent, file extent item and references, checksums through storeDataCsums.
 */
export function writePlainExtent(fs: Filesystem, root: bigint, ino: bigint, fileOffset: bigint, data: Uint8Array, rawSectors: Uint32Array): bigint {
  const ss = BigInt(fs.sectorsize);
  const len = BigInt(data.length);
  if (len % ss !== 0n) throw new ImageError('IMAGE_UNALIGNED', `plain extent of ${len} bytes is not sector aligned`);
  if (len > BTRFS_MAX_EXTENT_SIZE) throw new ImageError('IMAGE_EXTENT_TOO_BIG', `extent of ${len} bytes exceeds 128 MiB`);
  const bytenr = fs.allocData(len);
  fs.writeData(bytenr, data);
  storeDataCsums(fs, bytenr, data, rawSectors);
  insertFileExtent(fs, root, ino, fileOffset, { disk_bytenr: bytenr, disk_num_bytes: len, offset: 0n, num_bytes: len, ram_bytes: len, compression: BTRFS_COMPRESS_NONE });
  return bytenr;
}
