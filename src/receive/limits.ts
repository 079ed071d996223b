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
    throw new ReceiveError('FILE_TOO_BIG', `${what} [${offset}, +${len}) ends past the largest file size ${MAX_FILE_SIZE}`);
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
  if (name.length === 0 || name.length > XATTR_NAME_MAX) throw new ReceiveError('BAD_XATTR_NAME', `xattr name of ${name.length} bytes (must be 1..${XATTR_NAME_MAX})`);
  if (name.includes(0)) throw new ReceiveError('BAD_XATTR_NAME', `xattr name ${show} contains a NUL byte`);
  if (!XATTR_PREFIXES.some((p) => name.length > p.length && p.every((x, i) => name[i] === x))) {
    throw new ReceiveError('BAD_XATTR_NAME', `xattr name ${show} is in no namespace btrfs handles (user., trusted., security., system., btrfs.)`);
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
    throw new ReceiveError('ENCODED_TOO_LARGE', `unencoded_len ${unencodedLen} is over ${MAX_DECODED_LEN} bytes: not decoded`);
  }
  let r: { out: Uint8Array; decodedLen: number };
  try {
    r = decodeExtent(type, data, Number(unencodedLen), lzoSectorSize);
  } catch (e) {
    if (!(e instanceof CodecError) || e.offset === undefined) throw e;
    throw new CodecError(e.code, `${e.message} (at byte ${e.offset} of the encoded data)`, { cause: e });
  }
  if (r.decodedLen < need) throw new ReceiveError('ENCODED_SHORT', `encoded data decodes to ${r.decodedLen} bytes, the write needs ${need}`);
  return r.out;
}

const ACL_NAMES = new Set(['system.posix_acl_access', 'system.posix_acl_default']);
// posix_acl_xattr tags, in the order a valid ACL lists them
const ACL_USER_OBJ = 0x01;
const ACL_USER = 0x02;
const ACL_GROUP_OBJ = 0x04;
const ACL_GROUP = 0x08;
const ACL_MASK = 0x10;
const ACL_OTHER = 0x20;

/**
 * Values the kernel itself interprets must be well-formed: the kernel's receive fails on a malformed ACL
 * or file capability (setxattr refuses it), and an image that holds one anyway is one the kernel cannot
 * use — a garbage default ACL on a directory makes every file creation in it an I/O error. In `system.`
 * btrfs has nothing but the two POSIX ACLs.
 */
export function checkXattrValue(name: Uint8Array, value: Uint8Array): void {
  const n = Buffer.from(name).toString('latin1');
  if (n.startsWith('system.') && !ACL_NAMES.has(n)) throw new ReceiveError('BAD_XATTR_NAME', `xattr ${JSON.stringify(n)}: btrfs has no such system attribute`);
  // an empty value passes unchecked, as in setxattr (for an ACL it means "none")
  if (value.length === 0) return;
  if (ACL_NAMES.has(n)) checkPosixAcl(n, value);
  if (n === 'security.capability') checkFileCaps(value);
}

function checkPosixAcl(name: string, v: Uint8Array): void {
  const bad = (why: string): never => {
    throw new ReceiveError('BAD_ACL', `${name}: not a valid POSIX ACL (${why})`);
  };
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  if (v.length < 4 || dv.getUint32(0, true) !== 2) bad('header is not version 2');
  if ((v.length - 4) % 8 !== 0) bad(`${v.length} bytes is not a header and whole entries`);
  // entries in order: USER_OBJ, USER*, GROUP_OBJ, GROUP*, [MASK], OTHER; MASK required with USER/GROUP
  let step = 0; // 0: want USER_OBJ, 1: users, 2: groups, 3: after MASK, 4: done
  let named = false;
  for (let o = 4; o < v.length; o += 8) {
    const tag = dv.getUint16(o, true);
    if (dv.getUint16(o + 2, true) & ~7) bad('permission bits beyond rwx');
    if (step === 0 && tag === ACL_USER_OBJ) step = 1;
    else if (step === 1 && tag === ACL_USER) named = true;
    else if (step === 1 && tag === ACL_GROUP_OBJ) step = 2;
    else if (step === 2 && tag === ACL_GROUP) named = true;
    else if (step === 2 && tag === ACL_MASK) step = 3;
    else if ((step === 3 || (step === 2 && !named)) && tag === ACL_OTHER) step = 4;
    else bad(`entry with tag 0x${tag.toString(16)} out of place`);
  }
  if (step !== 4 && v.length > 4) bad('incomplete entry list');
}

function checkFileCaps(v: Uint8Array): void {
  // what setxattr takes: vfs_cap_data revision 2 (20 bytes) or 3 (24 bytes, with a namespace root uid)
  const rev = v.length >= 4 ? new DataView(v.buffer, v.byteOffset, 4).getUint32(0, true) >>> 24 : 0;
  const size: Record<number, number> = { 2: 20, 3: 24 };
  if (size[rev] !== v.length) throw new ReceiveError('BAD_CAPABILITY', `security.capability of ${v.length} bytes is no vfs_cap_data revision 2 or 3`);
}
