import {
  BTRFS_COMPRESS_LZO, BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_ZSTD, BTRFS_MAX_UNCOMPRESSED, type BtrfsCompressType,
  type ZstdFrameInfo, zstdFrameInfo, zstdWindowOk,
} from '../compress/index.js';
import { BTRFS_MAX_COMPRESSED } from '../compress/lzo-btrfs.js';
import { CodecError, ReceiveError } from '../errors.js';
import type { EncodedWriteCmd } from '../stream/types.js';

/** Why an encoded write cannot keep its bytes. Codes are stable (they appear in `plan --json`). */
export type ReasonCode =
  | 'force-decompress' | 'uncompressed' | 'lzo-sector-mismatch' | 'unencoded-len-too-large'
  | 'encoded-len-out-of-range' | 'not-smaller' | 'unaligned-offset' | 'unaligned-unencoded-offset'
  | 'unaligned-end' | 'codec-not-allowed' | 'zstd-window-too-large' | 'zstd-bad-frame';

export interface Reason {
  code: ReasonCode;
  detail: string;
}

export interface PlanContext {
  sectorsize: number;
  /** Size of the file before this write (the kernel allows an unaligned end only at or past it). */
  iSize: bigint;
  /** Whether the image may hold extents of this codec (its incompat bit is set or may be set). */
  codecAllowed?: (t: BtrfsCompressType) => boolean;
  forceDecompress?: boolean;
  /** zstdFrameInfo(c.data), already walked (a send walks it with the extent's first sector: send/extent-head.ts). */
  zstdFrame?: ZstdFrameInfo;
}

export interface PlanDecision {
  action: 'pass-through' | 'decompress';
  /** On-disk compress_type (1 zlib, 2 lzo, 3 zstd); undefined for compression 0. */
  diskType?: BtrfsCompressType;
  /** Sector size the LZO data was framed for. */
  lzoSectorSize?: number;
  /** Empty for pass-through. */
  reasons: Reason[];
  /** Bytes the extent takes on disk when passed through (encoded length rounded up to the sector). */
  diskNumBytes: number;
  /** Pass through as an inline compressed extent (small whole-file data), as the kernel does. */
  inline?: boolean;
}

/** The kernel's default max_inline mount option: inline data (compressed or not) up to 2048 bytes. */
export const BTRFS_DEFAULT_MAX_INLINE = 2048;

const CODEC_NAMES: Record<number, string> = { [BTRFS_COMPRESS_ZLIB]: 'zlib', [BTRFS_COMPRESS_LZO]: 'lzo', [BTRFS_COMPRESS_ZSTD]: 'zstd' };
export const codecName = (t: number | undefined): string => (t === undefined ? 'none' : CODEC_NAMES[t] ?? `type${t}`);

/**
 * Decides, for one ENCODED_WRITE, whether its bytes can become an extent as they are. The rules are the
 * kernel's for an encoded write (fs/btrfs/inode.c btrfs_do_encoded_write and the ioctl's checks), so an
 * extent passed through here is one the kernel's `btrfs receive` would also have kept compressed — except
 * that, as asked of the planner, the encoded length must be smaller once rounded up to the sector (the
 * kernel only asks for one byte smaller; its own compression never makes such extents).
 * Throws for writes no receiver can apply (encryption, unknown codec, inconsistent lengths).
 */
export function planEncodedWrite(c: EncodedWriteCmd, ctx: PlanContext): PlanDecision {
  // built for an error only: this runs for every encoded write
  const where = () => (c.meta ? { offset: c.meta.offset, commandIndex: c.meta.index, command: 'BTRFS_SEND_C_ENCODED_WRITE' } : {});
  const encryption = c.encryption ?? 0;
  if (encryption !== 0) throw new ReceiveError('ENCRYPTED_EXTENT', `encrypted encoded writes are not supported (encryption=${encryption})`, where());
  const compression = c.compression ?? 0;
  const ss = BigInt(ctx.sectorsize);
  const ulen = c.unencodedLen;
  const flen = c.unencodedFileLen;
  const uoff = c.unencodedOffset;
  if (uoff > ulen || flen > ulen - uoff) {
    throw new ReceiveError('BAD_ENCODED_LENGTHS', `unencoded_offset ${uoff} + unencoded_file_len ${flen} exceeds unencoded_len ${ulen}`, where());
  }
  const encLen = c.data.length;
  const diskNumBytes = Math.ceil(encLen / ctx.sectorsize) * ctx.sectorsize;
  const reasons: Reason[] = [];
  const r = (code: ReasonCode, detail: string) => reasons.push({ code, detail });

  let diskType: BtrfsCompressType | undefined;
  let lzoSectorSize: number | undefined;
  if (compression === 0) {
    r('uncompressed', 'compression 0: the data is already plain');
  } else if (compression === 1) diskType = BTRFS_COMPRESS_ZLIB;
  else if (compression === 2) diskType = BTRFS_COMPRESS_ZSTD;
  else if (compression >= 3 && compression <= 7) {
    diskType = BTRFS_COMPRESS_LZO;
    lzoSectorSize = 1 << (compression - 3 + 12);
    if (lzoSectorSize !== ctx.sectorsize) r('lzo-sector-mismatch', `LZO framed for ${lzoSectorSize}-byte sectors, image sectors are ${ctx.sectorsize}`);
  } else {
    throw new ReceiveError('UNKNOWN_COMPRESSION', `unknown encoded-write compression ${compression}`, where());
  }

  if (ctx.forceDecompress) r('force-decompress', '--force-decompress');
  if (ulen > BigInt(BTRFS_MAX_UNCOMPRESSED)) r('unencoded-len-too-large', `unencoded_len ${ulen} > ${BTRFS_MAX_UNCOMPRESSED}`);
  if (encLen === 0 || encLen > BTRFS_MAX_COMPRESSED) r('encoded-len-out-of-range', `encoded length ${encLen} not in 1..${BTRFS_MAX_COMPRESSED}`);
  // can_cow_file_range_inline: the whole (small) file at offset 0 may stay compressed inside the leaf
  const inline = c.fileOffset === 0n && uoff === 0n && flen === ulen && ulen <= ss && encLen > 0 &&
    encLen <= BTRFS_DEFAULT_MAX_INLINE && flen >= ctx.iSize;
  if (compression !== 0 && (inline ? BigInt(encLen) >= ulen : BigInt(diskNumBytes) >= ulen)) {
    r('not-smaller', `encoded length ${encLen} (${inline ? 'inline' : `${diskNumBytes} on disk`}) is not smaller than unencoded_len ${ulen}`);
  }
  if (c.fileOffset % ss !== 0n) r('unaligned-offset', `file offset ${c.fileOffset} is not a multiple of ${ss}`);
  if (uoff % ss !== 0n) r('unaligned-unencoded-offset', `unencoded_offset ${uoff} is not a multiple of ${ss}`);
  const end = c.fileOffset + flen;
  if (end < ctx.iSize && end % ss !== 0n) r('unaligned-end', `write ends at ${end}, unaligned and before EOF ${ctx.iSize}`);
  if (diskType !== undefined && ctx.codecAllowed && !ctx.codecAllowed(diskType)) r('codec-not-allowed', `the image may not take ${codecName(diskType)} extents`);
  if (diskType === BTRFS_COMPRESS_ZSTD && encLen > 0) {
    try {
      const info = ctx.zstdFrame ?? zstdFrameInfo(c.data);
      if (!zstdWindowOk(info)) r('zstd-window-too-large', `zstd frame needs a ${info.windowSize}-byte window (dictionary ${info.dictId}); the kernel decodes at most 128 KiB`);
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      r('zstd-bad-frame', e.message);
    }
  }
  const d: PlanDecision = { action: reasons.length ? 'decompress' : 'pass-through', reasons, diskNumBytes };
  if (inline && !reasons.length) d.inline = true;
  if (diskType !== undefined) d.diskType = diskType;
  if (lzoSectorSize !== undefined) d.lzoSectorSize = lzoSectorSize;
  return d;
}
