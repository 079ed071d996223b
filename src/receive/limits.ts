import { type BtrfsCompressType, decodeExtent } from '../compress/index.js';
import { CodecError, ReceiveError } from '../errors.js';

/**
 * The largest file the kernel allows (MAX_LFS_FILESIZE, btrfs's s_maxbytes): no byte of a file lies at
 * or past 2^63-1. The on-disk u64 sizes and offsets can hold more, and btrfs check accepts them, but the
 * kernel's tree checker then refuses the leaf (I/O error) or shows a negative size — so a stream asking
 * for more is refused here, as the kernel refuses it with EFBIG.
 */
export const MAX_FILE_SIZE = (1n << 63n) - 1n;

/** Refuses a file range [offset, offset+len) that ends past MAX_FILE_SIZE (u64 wrap-around included). */
export function checkFileRange(what: string, offset: bigint, len: bigint): void {
  if (offset > MAX_FILE_SIZE || len > MAX_FILE_SIZE - offset) {
    throw new ReceiveError('file-too-big', `${what} [${offset}, +${len}) ends past the largest file size ${MAX_FILE_SIZE}`);
  }
}

const XATTR_NAME_MAX = 255;
const XATTR_PREFIXES = ['user.', 'trusted.', 'security.', 'system.', 'btrfs.'].map((p) => new TextEncoder().encode(p));

/**
 * An xattr name the kernel's setxattr would take: 1..255 bytes, no NUL (it is a C string there), in a
 * namespace btrfs handles. btrfs check reports names over 255 bytes as "invalid xattr".
 */
export function checkXattrName(name: Uint8Array): void {
  const show = JSON.stringify(Buffer.from(name.subarray(0, 40)).toString('latin1'));
  if (name.length === 0 || name.length > XATTR_NAME_MAX) throw new ReceiveError('bad-xattr-name', `xattr name of ${name.length} bytes (must be 1..${XATTR_NAME_MAX})`);
  if (name.includes(0)) throw new ReceiveError('bad-xattr-name', `xattr name ${show} contains a NUL byte`);
  if (!XATTR_PREFIXES.some((p) => name.length > p.length && p.every((x, i) => name[i] === x))) {
    throw new ReceiveError('bad-xattr-name', `xattr name ${show} is in no namespace btrfs handles (user., trusted., security., system., btrfs.)`);
  }
}

/**
 * Largest unencoded_len decoded in memory for the decompress fallback and --check-extents. The kernel's
 * send never makes one over 128 KiB (BTRFS_MAX_UNCOMPRESSED); btrfs-progs allocates whatever the stream
 * says. 16 MiB is the parser's default command size limit: memory stays bounded per command.
 */
export const MAX_DECODED_LEN = 16 << 20;

/**
 * Decodes an ENCODED_WRITE's data for a write of `need` bytes (unencoded_offset + unencoded_file_len):
 * refused when unencoded_len is over MAX_DECODED_LEN, when the bytes do not decode, or when they decode
 * to fewer bytes than the write covers (the kernel would read zeros there; the stream is inconsistent).
 * Codec errors carry offsets inside the extent: they move into the message so the error reports the
 * command's offset in the stream.
 */
export function decodeEncodedData(type: BtrfsCompressType, data: Uint8Array, unencodedLen: bigint, need: number, lzoSectorSize: number): Uint8Array {
  if (unencodedLen > BigInt(MAX_DECODED_LEN)) {
    throw new ReceiveError('encoded-too-large', `unencoded_len ${unencodedLen} is over ${MAX_DECODED_LEN} bytes: not decoded`);
  }
  let r: { out: Uint8Array; decodedLen: number };
  try {
    r = decodeExtent(type, data, Number(unencodedLen), lzoSectorSize);
  } catch (e) {
    if (!(e instanceof CodecError) || e.offset === undefined) throw e;
    throw new CodecError(e.code, `${e.message} (at byte ${e.offset} of the encoded data)`, { cause: e });
  }
  if (r.decodedLen < need) throw new ReceiveError('encoded-short', `encoded data decodes to ${r.decodedLen} bytes, the write needs ${need}`);
  return r.out;
}
