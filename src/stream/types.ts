import type * as C from './constants.js';

/** Seconds are signed (times before 1970 are negative on the wire); nanoseconds are u32. */
export interface Timespec {
  sec: bigint;
  nsec: number;
}

/** Where a command was found; filled by the parser, optional when a command is built by hand. */
export interface CommandMeta {
  /** Absolute byte offset of the command header in the input. */
  offset: number;
  /** 0-based index of the command in the whole input (across concatenated streams). */
  index: number;
  /** 0-based index of the stream (header) the command belongs to. */
  streamIndex: number;
  /** Protocol version of the enclosing stream. */
  version: number;
  /** Payload length from the command header. */
  len: number;
  /**
   * Attribute types in the order they appeared. The kernel's order varies by inode type (MKFIFO carries
   * RDEV and MODE, MKFILE does not), so the writer replays this order to reproduce the bytes exactly.
   */
  attrOrder: number[];
  /** Attributes the command does not define (btrfs-progs ignores them); kept so the writer can emit them. */
  extraAttrs?: RawAttr[];
}

export interface RawAttr {
  type: number;
  value: Uint8Array;
}

interface Base {
  meta?: CommandMeta;
}

/** Paths and names are raw bytes: btrfs names need not be UTF-8. */
export type Bytes = Uint8Array;

export interface SubvolCmd extends Base { cmd: typeof C.BTRFS_SEND_C_SUBVOL; path: Bytes; uuid: Bytes; ctransid: bigint }
export interface SnapshotCmd extends Base {
  cmd: typeof C.BTRFS_SEND_C_SNAPSHOT; path: Bytes; uuid: Bytes; ctransid: bigint; cloneUuid: Bytes; cloneCtransid: bigint;
}
/** MKFILE, MKDIR, MKNOD, MKFIFO, MKSOCK, SYMLINK: the kernel's send_create_inode. */
export interface CreateCmd extends Base {
  cmd:
    | typeof C.BTRFS_SEND_C_MKFILE | typeof C.BTRFS_SEND_C_MKDIR | typeof C.BTRFS_SEND_C_MKNOD
    | typeof C.BTRFS_SEND_C_MKFIFO | typeof C.BTRFS_SEND_C_MKSOCK;
  path: Bytes;
  ino: bigint;
  /** Sent for device nodes, fifos and sockets; required for MKNOD. */
  mode?: bigint;
  rdev?: bigint;
}
export interface SymlinkCmd extends Base { cmd: typeof C.BTRFS_SEND_C_SYMLINK; path: Bytes; ino: bigint; pathLink: Bytes }
export interface RenameCmd extends Base { cmd: typeof C.BTRFS_SEND_C_RENAME; path: Bytes; pathTo: Bytes }
export interface LinkCmd extends Base { cmd: typeof C.BTRFS_SEND_C_LINK; path: Bytes; pathLink: Bytes }
export interface UnlinkCmd extends Base { cmd: typeof C.BTRFS_SEND_C_UNLINK | typeof C.BTRFS_SEND_C_RMDIR; path: Bytes }
export interface SetXattrCmd extends Base { cmd: typeof C.BTRFS_SEND_C_SET_XATTR; path: Bytes; name: Bytes; data: Bytes }
export interface RemoveXattrCmd extends Base { cmd: typeof C.BTRFS_SEND_C_REMOVE_XATTR; path: Bytes; name: Bytes }
/** `data` is a view into the parser's buffer: use or copy it before pulling the next command. */
export interface WriteCmd extends Base {
  cmd: typeof C.BTRFS_SEND_C_WRITE; path: Bytes; fileOffset: bigint; data: Bytes;
  /** Not on the wire: the raw CRC32C of `data` when its producer knows it (a send, from verified sector checksums). */
  dataCrc?: number;
}
export interface CloneCmd extends Base {
  cmd: typeof C.BTRFS_SEND_C_CLONE; path: Bytes; fileOffset: bigint; cloneLen: bigint; cloneUuid: Bytes;
  cloneCtransid: bigint; clonePath: Bytes; cloneOffset: bigint;
}
export interface TruncateCmd extends Base { cmd: typeof C.BTRFS_SEND_C_TRUNCATE; path: Bytes; size: bigint }
export interface ChmodCmd extends Base { cmd: typeof C.BTRFS_SEND_C_CHMOD; path: Bytes; mode: bigint }
export interface ChownCmd extends Base { cmd: typeof C.BTRFS_SEND_C_CHOWN; path: Bytes; uid: bigint; gid: bigint }
export interface UtimesCmd extends Base {
  cmd: typeof C.BTRFS_SEND_C_UTIMES; path: Bytes; atime: Timespec; mtime: Timespec; ctime: Timespec;
  /** Only v2+ kernels send it, and only for inodes that have one. */
  otime?: Timespec;
}
export interface EndCmd extends Base { cmd: typeof C.BTRFS_SEND_C_END }
export interface UpdateExtentCmd extends Base {
  cmd: typeof C.BTRFS_SEND_C_UPDATE_EXTENT; path: Bytes; fileOffset: bigint; size: bigint;
}
export interface FallocateCmd extends Base {
  cmd: typeof C.BTRFS_SEND_C_FALLOCATE; path: Bytes; mode: number; fileOffset: bigint; size: bigint;
}
export interface FileattrCmd extends Base { cmd: typeof C.BTRFS_SEND_C_FILEATTR; path: Bytes; fileattr: bigint }
export interface EncodedWriteCmd extends Base {
  cmd: typeof C.BTRFS_SEND_C_ENCODED_WRITE; path: Bytes; fileOffset: bigint; unencodedFileLen: bigint;
  unencodedLen: bigint; unencodedOffset: bigint;
  /** Encoded-I/O numbering (1 zlib, 2 zstd, 3..7 lzo): absent on the wire means 0. */
  compression?: number;
  encryption?: number;
  data: Bytes;
  /** Not on the wire: as WriteCmd's. */
  dataCrc?: number;
}
export interface EnableVerityCmd extends Base {
  cmd: typeof C.BTRFS_SEND_C_ENABLE_VERITY; path: Bytes; algorithm: number; blockSize: number; salt: Bytes; sig: Bytes;
}
/** A command id this version does not know; reported, never silently dropped. */
export interface UnknownCmd extends Base { cmd: number; unknown: true; payload: Bytes }

export type KnownCommand =
  | SubvolCmd | SnapshotCmd | CreateCmd | SymlinkCmd | RenameCmd | LinkCmd | UnlinkCmd | SetXattrCmd
  | RemoveXattrCmd | WriteCmd | CloneCmd | TruncateCmd | ChmodCmd | ChownCmd | UtimesCmd | EndCmd
  | UpdateExtentCmd | FallocateCmd | FileattrCmd | EncodedWriteCmd | EnableVerityCmd;

export type SendCommand = KnownCommand | UnknownCmd;

export function isUnknown(c: SendCommand): c is UnknownCmd {
  return (c as UnknownCmd).unknown === true;
}

/** What the parser yields: a stream header, then its commands, for every stream in the input. */
export type StreamItem =
  | { kind: 'header'; version: number; offset: number; streamIndex: number }
  | { kind: 'command'; command: SendCommand & { meta: CommandMeta } };
