import { ReceiveError } from '../errors.js';

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
