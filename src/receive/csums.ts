import type { Filesystem } from '../image/write/filesystem.js';
import { BTRFS_CSUM_TYPE_CRC32 } from '../image/structs/constants.js';
import { CRC_SECTOR, btrfsCsumFromRaw } from '../util/crc32c-combine.js';

/**
 * On-disk checksums for the first sectors of data whose raw per-4 KiB CRC32Cs the stream parser left
 * behind (its CRC check ran over the same bytes): addDataCsums / writeDataExtent then skip those sectors.
 * Only when the image's sectors are 4 KiB and its checksums crc32c; otherwise nothing is known and the
 * data is read again.
 */
export function knownCsums(fs: Filesystem, rawSectors: Uint32Array | undefined): Uint32Array | undefined {
  if (rawSectors === undefined || rawSectors.length === 0 || fs.sectorsize !== CRC_SECTOR) return undefined;
  if (fs.sb.csum_type !== BTRFS_CSUM_TYPE_CRC32) return undefined;
  const out = new Uint32Array(rawSectors.length);
  for (let i = 0; i < rawSectors.length; i++) out[i] = btrfsCsumFromRaw(rawSectors[i]!);
  return out;
}
