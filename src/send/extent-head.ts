import { type ZstdFrameInfo, zstdHeadersWithin } from '../compress/zstd.js';
import type { SectorCsums } from '../image/read/sector-csums.js';
import { csumAlgo, firstBadSector } from '../image/structs.js';
import { placeInto } from '../util/bytes.js';
import { CRC_SECTOR } from '../util/crc32c-combine.js';
import { crc32cEngine } from '../util/crc32c.js';
import { nativeAddon } from '../util/native-addon.js';
import type { ExtentRef } from './extent-data.js';

/** The addon's extentHead (native/extent-head.c), where its CRC32C is the engine in use (it passed crc32c.ts's probes). */
const extentHead = crc32cEngine === 'addon' ? nativeAddon?.extentHead : undefined;
/** Where extentHead puts a zstd frame's fields. */
const frameOut = new Float64Array(8);

/**
 * The first sector of a compressed extent whose rest is read behind the send (extent-data.ts readBehind):
 * read from `phys` into `data` and checked against the first of `sums` now, for what looks at it before
 * the command goes out — planEncodedWrite walks a zstd frame's block headers, and a frame of several blocks
 * may have them past the first sector, where `data` holds earlier bytes until the rest is read. False:
 * the extent is to be read in line (a bad first sector, a header past it), whose read says what it finds.
 * Else the frame as zstdFrameInfo gives it where it was walked here (`len`: the extent's stored length).
 *
 * One addon call where there is one (extentHead: pread, CRC32C, the walk; ~60 ms of the send's thread in
 * JavaScript for 7,366 extents, the frame walked twice); anything it does not settle — a failed read, a
 * frame it leaves to zstdFrameInfo — goes the JavaScript way, whose errors and verdicts stand.
 */
export async function readHead(x: ExtentRef, phys: bigint, data: Uint8Array, len: number, sums: SectorCsums, zstd: boolean): Promise<false | { frame?: ZstdFrameInfo }> {
  const fd = x.img.src.fd;
  if (extentHead && fd !== undefined && x.img.sectorsize === CRC_SECTOR) {
    const r = extentHead(fd, Number(phys), data, sums.sums, len, zstd, frameOut);
    if (r === 0) return false;
    if (r === 1) return zstd ? { frame: frameFrom(frameOut) } : {};
    if (r === 2) return zstdHeadersWithin(data, CRC_SECTOR) && {};
  }
  const got = await x.img.src.read(phys, CRC_SECTOR, data);
  placeInto(data, got);
  if (firstBadSector(csumAlgo(x.img.superblock.csum_type), data, CRC_SECTOR, CRC_SECTOR, sums.sums, sums.have.subarray(0, 1)) >= 0) return false;
  return (!zstd || zstdHeadersWithin(data, CRC_SECTOR)) && {};
}

function frameFrom(o: Float64Array): ZstdFrameInfo {
  const info: ZstdFrameInfo = {
    frameLen: o[0]!, headerLen: o[1]!, windowSize: o[2]!, singleSegment: o[4] === 1, hasChecksum: o[5] === 1, dictId: o[6]!, blockCount: o[7]!,
  };
  if (!Number.isNaN(o[3])) info.contentSize = o[3]!;
  return info;
}
