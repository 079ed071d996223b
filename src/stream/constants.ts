/**
 * Send stream numbering, named as in the kernel's fs/btrfs/send.h so code can be grepped against it.
 * These are wire values: never renumber.
 */
export const BTRFS_SEND_STREAM_MAGIC = 'btrfs-stream';
/** magic + NUL + le32 version */
export const BTRFS_STREAM_HEADER_SIZE = 17;
/** le32 len, le16 cmd, le32 crc */
export const BTRFS_CMD_HEADER_SIZE = 10;
/** le16 type, le16 len */
export const BTRFS_TLV_HEADER_SIZE = 4;

export const BTRFS_SEND_STREAM_VERSION_MIN = 1;
/** Version 3 (fs-verity) is only sent by experimental kernels; we still parse it. */
export const BTRFS_SEND_STREAM_VERSION_MAX = 3;

/**
 * The kernel never sends a command larger than its send buffer (64 KiB in v1, 16 KiB + 128 KiB in v2).
 * btrfs-progs grows its buffer to whatever a header declares, which lets a corrupt length allocate
 * gigabytes; we refuse past this cap instead (overridable for hand-made streams).
 */
export const DEFAULT_MAX_COMMAND_LEN = 16 * 1024 * 1024;

export const BTRFS_SEND_C_UNSPEC = 0;
export const BTRFS_SEND_C_SUBVOL = 1;
export const BTRFS_SEND_C_SNAPSHOT = 2;
export const BTRFS_SEND_C_MKFILE = 3;
export const BTRFS_SEND_C_MKDIR = 4;
export const BTRFS_SEND_C_MKNOD = 5;
export const BTRFS_SEND_C_MKFIFO = 6;
export const BTRFS_SEND_C_MKSOCK = 7;
export const BTRFS_SEND_C_SYMLINK = 8;
export const BTRFS_SEND_C_RENAME = 9;
export const BTRFS_SEND_C_LINK = 10;
export const BTRFS_SEND_C_UNLINK = 11;
export const BTRFS_SEND_C_RMDIR = 12;
export const BTRFS_SEND_C_SET_XATTR = 13;
export const BTRFS_SEND_C_REMOVE_XATTR = 14;
export const BTRFS_SEND_C_WRITE = 15;
export const BTRFS_SEND_C_CLONE = 16;
export const BTRFS_SEND_C_TRUNCATE = 17;
export const BTRFS_SEND_C_CHMOD = 18;
export const BTRFS_SEND_C_CHOWN = 19;
export const BTRFS_SEND_C_UTIMES = 20;
export const BTRFS_SEND_C_END = 21;
export const BTRFS_SEND_C_UPDATE_EXTENT = 22;
export const BTRFS_SEND_C_FALLOCATE = 23;
export const BTRFS_SEND_C_FILEATTR = 24;
export const BTRFS_SEND_C_ENCODED_WRITE = 25;
export const BTRFS_SEND_C_ENABLE_VERITY = 26;
export const BTRFS_SEND_C_MAX = 26;

export const BTRFS_SEND_A_UNSPEC = 0;
export const BTRFS_SEND_A_UUID = 1;
export const BTRFS_SEND_A_CTRANSID = 2;
export const BTRFS_SEND_A_INO = 3;
export const BTRFS_SEND_A_SIZE = 4;
export const BTRFS_SEND_A_MODE = 5;
export const BTRFS_SEND_A_UID = 6;
export const BTRFS_SEND_A_GID = 7;
export const BTRFS_SEND_A_RDEV = 8;
export const BTRFS_SEND_A_CTIME = 9;
export const BTRFS_SEND_A_MTIME = 10;
export const BTRFS_SEND_A_ATIME = 11;
export const BTRFS_SEND_A_OTIME = 12;
export const BTRFS_SEND_A_XATTR_NAME = 13;
export const BTRFS_SEND_A_XATTR_DATA = 14;
export const BTRFS_SEND_A_PATH = 15;
export const BTRFS_SEND_A_PATH_TO = 16;
export const BTRFS_SEND_A_PATH_LINK = 17;
export const BTRFS_SEND_A_FILE_OFFSET = 18;
/** From v2 on: no length field, takes the rest of the command. */
export const BTRFS_SEND_A_DATA = 19;
export const BTRFS_SEND_A_CLONE_UUID = 20;
export const BTRFS_SEND_A_CLONE_CTRANSID = 21;
export const BTRFS_SEND_A_CLONE_PATH = 22;
export const BTRFS_SEND_A_CLONE_OFFSET = 23;
export const BTRFS_SEND_A_CLONE_LEN = 24;
export const BTRFS_SEND_A_FALLOCATE_MODE = 25;
export const BTRFS_SEND_A_FILEATTR = 26;
export const BTRFS_SEND_A_UNENCODED_FILE_LEN = 27;
export const BTRFS_SEND_A_UNENCODED_LEN = 28;
export const BTRFS_SEND_A_UNENCODED_OFFSET = 29;
export const BTRFS_SEND_A_COMPRESSION = 30;
export const BTRFS_SEND_A_ENCRYPTION = 31;
export const BTRFS_SEND_A_VERITY_ALGORITHM = 32;
export const BTRFS_SEND_A_VERITY_BLOCK_SIZE = 33;
export const BTRFS_SEND_A_VERITY_SALT_DATA = 34;
export const BTRFS_SEND_A_VERITY_SIG_DATA = 35;
export const BTRFS_SEND_A_MAX = 35;

/** FALLOCATE modes that the kernel sends (linux/falloc.h). */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;

const CMD_NAMES: readonly string[] = [
  'UNSPEC', 'SUBVOL', 'SNAPSHOT', 'MKFILE', 'MKDIR', 'MKNOD', 'MKFIFO', 'MKSOCK', 'SYMLINK', 'RENAME',
  'LINK', 'UNLINK', 'RMDIR', 'SET_XATTR', 'REMOVE_XATTR', 'WRITE', 'CLONE', 'TRUNCATE', 'CHMOD', 'CHOWN',
  'UTIMES', 'END', 'UPDATE_EXTENT', 'FALLOCATE', 'FILEATTR', 'ENCODED_WRITE', 'ENABLE_VERITY',
];

const ATTR_NAMES: readonly string[] = [
  'UNSPEC', 'UUID', 'CTRANSID', 'INO', 'SIZE', 'MODE', 'UID', 'GID', 'RDEV', 'CTIME', 'MTIME', 'ATIME',
  'OTIME', 'XATTR_NAME', 'XATTR_DATA', 'PATH', 'PATH_TO', 'PATH_LINK', 'FILE_OFFSET', 'DATA', 'CLONE_UUID',
  'CLONE_CTRANSID', 'CLONE_PATH', 'CLONE_OFFSET', 'CLONE_LEN', 'FALLOCATE_MODE', 'FILEATTR',
  'UNENCODED_FILE_LEN', 'UNENCODED_LEN', 'UNENCODED_OFFSET', 'COMPRESSION', 'ENCRYPTION',
  'VERITY_ALGORITHM', 'VERITY_BLOCK_SIZE', 'VERITY_SALT_DATA', 'VERITY_SIG_DATA',
];

/** `BTRFS_SEND_C_WRITE` for 15; unknown ids get a name that still says what they were. */
export function sendCommandName(cmd: number): string {
  const n = CMD_NAMES[cmd];
  return n === undefined ? `BTRFS_SEND_C_UNKNOWN(${cmd})` : `BTRFS_SEND_C_${n}`;
}

export function sendAttrName(attr: number): string {
  const n = ATTR_NAMES[attr];
  return n === undefined ? `BTRFS_SEND_A_UNKNOWN(${attr})` : `BTRFS_SEND_A_${n}`;
}
