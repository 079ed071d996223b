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
