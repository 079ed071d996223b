/**
 * Hand-built streams covering every command and attribute of protocols 1–3, for tests that need inputs the
 * kernel does not produce on this machine (v3 verity, FILEATTR, odd names, hostile bytes).
 */
import * as C from '../../src/stream/constants.js';
import { concatBytes } from '../../src/util/bytes.js';
import type { SendCommand, Timespec } from '../../src/stream/types.js';
import { encodeCommand, encodeStreamHeader } from '../../src/stream/writer.js';

const te = new TextEncoder();
export const b = (s: string | number[]): Uint8Array => (typeof s === 'string' ? te.encode(s) : Uint8Array.from(s));
export const uuid = (seed: number): Uint8Array => Uint8Array.from({ length: 16 }, (_, i) => (seed * 31 + i * 7) & 0xff);
const t = (sec: bigint, nsec = 0): Timespec => ({ sec, nsec });

export function allCommands(version: number): SendCommand[] {
  const cmds: SendCommand[] = [
    { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('vol'), uuid: uuid(1), ctransid: 7n },
    { cmd: C.BTRFS_SEND_C_CHOWN, path: b(''), uid: 0n, gid: 0n },
    { cmd: C.BTRFS_SEND_C_MKDIR, path: b('o257-7-0'), ino: 257n },
    { cmd: C.BTRFS_SEND_C_RENAME, path: b('o257-7-0'), pathTo: b('dir with space') },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: b('dir with space/f\n\t\\x'), ino: 258n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: b('dir with space/f\n\t\\x'), fileOffset: 0n, data: b('hello world') },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: b([0x6e, 0xff, 0xfe, 0x01, 0x7f]), ino: 259n },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: b('x'.repeat(255)), ino: 260n },
    { cmd: C.BTRFS_SEND_C_MKNOD, path: b('cdev'), ino: 261n, rdev: 0x103n, mode: 0o20644n },
    { cmd: C.BTRFS_SEND_C_MKFIFO, path: b('fifo'), ino: 262n, rdev: 0n, mode: 0o10644n },
    { cmd: C.BTRFS_SEND_C_MKSOCK, path: b('sock'), ino: 263n, rdev: 0n, mode: 0o140755n },
    { cmd: C.BTRFS_SEND_C_SYMLINK, path: b('link'), ino: 264n, pathLink: b('../a b/\x07target') },
    { cmd: C.BTRFS_SEND_C_LINK, path: b('hard'), pathLink: b('x'.repeat(255)) },
    { cmd: C.BTRFS_SEND_C_SET_XATTR, path: b('link'), name: b('user.k'), data: b([0x76, 0, 0x77]) },
    { cmd: C.BTRFS_SEND_C_SET_XATTR, path: b('hard'), name: b('user.long'), data: new Uint8Array(3000).fill(0x41) },
    { cmd: C.BTRFS_SEND_C_REMOVE_XATTR, path: b('link'), name: b('user.k') },
    { cmd: C.BTRFS_SEND_C_CLONE, path: b('hard'), fileOffset: 4096n, cloneLen: 8192n, cloneUuid: uuid(1), cloneCtransid: 7n, clonePath: b('dir with space/f\n\t\\x'), cloneOffset: 0n },
    { cmd: C.BTRFS_SEND_C_TRUNCATE, path: b('hard'), size: 12345n },
    { cmd: C.BTRFS_SEND_C_CHMOD, path: b('hard'), mode: 0o4755n },
    { cmd: C.BTRFS_SEND_C_CHOWN, path: b('hard'), uid: 1234n, gid: 5678n },
    { cmd: C.BTRFS_SEND_C_UTIMES, path: b('hard'), atime: t(-14182940n, 5), mtime: t(253402300800n, 999999999), ctime: t(1700000000n) },
    { cmd: C.BTRFS_SEND_C_UPDATE_EXTENT, path: b('hard'), fileOffset: 0n, size: 65536n },
    { cmd: C.BTRFS_SEND_C_UNLINK, path: b('hard') },
    { cmd: C.BTRFS_SEND_C_RMDIR, path: b('dir with space') },
  ];
  if (version >= 2) {
    cmds.push(
      { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('x'.repeat(255)), mode: 1, fileOffset: 0n, size: 1n << 20n },
      { cmd: C.BTRFS_SEND_C_FILEATTR, path: b('x'.repeat(255)), fileattr: 0x10n },
      { cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: b('x'.repeat(255)), fileOffset: 0n, unencodedFileLen: 131072n, unencodedLen: 131072n, unencodedOffset: 0n, compression: 2, data: new Uint8Array(4096).fill(7) },
      { cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: b('x'.repeat(255)), fileOffset: 131072n, unencodedFileLen: 4096n, unencodedLen: 4096n, unencodedOffset: 0n, data: new Uint8Array(4096) },
      { cmd: C.BTRFS_SEND_C_UTIMES, path: b(''), atime: t(1n), mtime: t(2n), ctime: t(3n), otime: t(4n, 7) },
    );
  }
  if (version >= 3) {
    cmds.push({ cmd: C.BTRFS_SEND_C_ENABLE_VERITY, path: b('x'.repeat(255)), algorithm: 1, blockSize: 4096, salt: b('salt'), sig: new Uint8Array(0) });
  }
  cmds.push({ cmd: C.BTRFS_SEND_C_END });
  return cmds;
}

export function encodeAll(version: number, cmds: SendCommand[]): Uint8Array {
  return concat(encodeStreamHeader(version), ...cmds.map((c) => encodeCommand(c, version)));
}

/** All parts in one array (test shorthand for concatBytes). */
export const concat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);

/** The same bytes cut three ways: whole, one byte per chunk, odd slices (1, 2, 3, 5, 7, 11, ...). */
export function slicings(buf: Uint8Array, withBytewise = true): [string, Uint8Array[]][] {
  const odd: Uint8Array[] = [];
  const sizes = [1, 2, 3, 5, 7, 11, 13, 17, 4093, 9973, 65537];
  for (let o = 0, i = 0; o < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    odd.push(buf.subarray(o, o + n));
    o += n;
  }
  const out: [string, Uint8Array[]][] = [['whole', [buf]], ['odd slices', odd]];
  if (withBytewise) {
    // one byte per chunk for the first 256 KiB (every boundary case occurs there many times), then the rest
    const n = Math.min(buf.length, 256 * 1024);
    const bytes = Array.from({ length: n }, (_, i) => buf.subarray(i, i + 1));
    if (n < buf.length) bytes.push(buf.subarray(n));
    out.push(['byte at a time', bytes]);
  }
  return out;
}
