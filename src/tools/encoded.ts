import { BTRFS_MAX_UNCOMPRESSED, decodeExtent, encodedToDisk } from '../compress/index.js';
import { CodecError } from '../errors.js';
import type { EncodedWriteCmd } from '../stream/types.js';

/**
 * The file bytes an ENCODED_WRITE stands for: what `btrfs receive` writes when it cannot pass the
 * extent through (decode the whole extent, take unencoded_file_len bytes from unencoded_offset). Data
 * that decodes to less than that range is refused (the kernel never sends it).
 */
export function encodedFileBytes(c: EncodedWriteCmd, sectorsize = 4096): Uint8Array {
  if ((c.encryption ?? 0) !== 0) throw new CodecError('ENCODED_ENCRYPTION', `encrypted encoded writes (encryption ${c.encryption}) are not supported`);
  const ulen = Number(c.unencodedLen);
  const flen = Number(c.unencodedFileLen);
  const uoff = Number(c.unencodedOffset);
  if (uoff + flen > ulen) {
    throw new CodecError('ENCODED_LENGTHS', `unencoded_offset ${uoff} + unencoded_file_len ${flen} exceeds unencoded_len ${ulen}`);
  }
  if ((c.compression ?? 0) === 0) {
    // no compression: the data is the extent itself
    if (c.data.length < uoff + flen) throw new CodecError('ENCODED_LENGTHS', `uncompressed encoded write has ${c.data.length} bytes, needs ${uoff + flen}`);
    return c.data.subarray(uoff, uoff + flen);
  }
  // the kernel never makes a compressed extent larger than 128 KiB; a larger claim would only make us
  // allocate what a hostile stream asks for
  if (ulen > BTRFS_MAX_UNCOMPRESSED) {
    throw new CodecError('ENCODED_TOO_LARGE', `unencoded_len ${ulen} exceeds the ${BTRFS_MAX_UNCOMPRESSED}-byte limit of compressed extents`);
  }
  const { type, lzoSectorSize } = encodedToDisk(c.compression!);
  const { out, decodedLen } = decodeExtent(type, c.data, ulen, lzoSectorSize ?? sectorsize);
  // the kernel always sends data that covers the file range (an EOF extent's range is cut to i_size)
  if (decodedLen < uoff + flen) {
    throw new CodecError('ENCODED_SHORT', `compressed data decodes to ${decodedLen} bytes, short of the file range ${uoff}..${uoff + flen}`);
  }
  return out.subarray(uoff, uoff + flen);
}
