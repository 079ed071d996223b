import * as C from './constants.js';
import type { AttrTable } from './attrs.js';
import type { CommandMeta, SendCommand } from './types.js';

type Builder = (a: AttrTable) => SendCommand;

/**
 * Per command: which attributes it defines and how they become typed fields. The required set mirrors
 * btrfs-progs' `read_and_process_cmd`, so a stream progs refuses for a missing attribute is refused here too.
 */
const BUILDERS = new Map<number, { attrs: readonly number[]; build: Builder }>();

function def(cmd: number, attrs: readonly number[], build: Builder): void {
  BUILDERS.set(cmd, { attrs, build });
}

const { BTRFS_SEND_A_PATH: PATH, BTRFS_SEND_A_INO: INO, BTRFS_SEND_A_MODE: MODE, BTRFS_SEND_A_RDEV: RDEV } = C;

def(C.BTRFS_SEND_C_SUBVOL, [PATH, C.BTRFS_SEND_A_UUID, C.BTRFS_SEND_A_CTRANSID], (a) => ({
  cmd: C.BTRFS_SEND_C_SUBVOL, path: a.bytes(PATH), uuid: a.uuid(C.BTRFS_SEND_A_UUID), ctransid: a.u64(C.BTRFS_SEND_A_CTRANSID),
}));
def(C.BTRFS_SEND_C_SNAPSHOT,
  [PATH, C.BTRFS_SEND_A_UUID, C.BTRFS_SEND_A_CTRANSID, C.BTRFS_SEND_A_CLONE_UUID, C.BTRFS_SEND_A_CLONE_CTRANSID], (a) => ({
    cmd: C.BTRFS_SEND_C_SNAPSHOT, path: a.bytes(PATH), uuid: a.uuid(C.BTRFS_SEND_A_UUID),
    ctransid: a.u64(C.BTRFS_SEND_A_CTRANSID), cloneUuid: a.uuid(C.BTRFS_SEND_A_CLONE_UUID),
    cloneCtransid: a.u64(C.BTRFS_SEND_A_CLONE_CTRANSID),
  }));
for (const cmd of [C.BTRFS_SEND_C_MKFILE, C.BTRFS_SEND_C_MKDIR, C.BTRFS_SEND_C_MKFIFO, C.BTRFS_SEND_C_MKSOCK] as const) {
  def(cmd, [PATH, INO, RDEV, MODE], (a) => {
    const c: SendCommand = { cmd, path: a.bytes(PATH), ino: a.u64(INO) };
    const mode = a.optU64(MODE);
    const rdev = a.optU64(RDEV);
    if (mode !== undefined) c.mode = mode;
    if (rdev !== undefined) c.rdev = rdev;
    return c;
  });
}
def(C.BTRFS_SEND_C_MKNOD, [PATH, INO, RDEV, MODE], (a) => ({
  cmd: C.BTRFS_SEND_C_MKNOD, path: a.bytes(PATH), ino: a.u64(INO), mode: a.u64(MODE), rdev: a.u64(RDEV),
}));
def(C.BTRFS_SEND_C_SYMLINK, [PATH, INO, C.BTRFS_SEND_A_PATH_LINK], (a) => ({
  cmd: C.BTRFS_SEND_C_SYMLINK, path: a.bytes(PATH), ino: a.u64(INO), pathLink: a.bytes(C.BTRFS_SEND_A_PATH_LINK),
}));
def(C.BTRFS_SEND_C_RENAME, [PATH, C.BTRFS_SEND_A_PATH_TO], (a) => ({
  cmd: C.BTRFS_SEND_C_RENAME, path: a.bytes(PATH), pathTo: a.bytes(C.BTRFS_SEND_A_PATH_TO),
}));
def(C.BTRFS_SEND_C_LINK, [PATH, C.BTRFS_SEND_A_PATH_LINK], (a) => ({
  cmd: C.BTRFS_SEND_C_LINK, path: a.bytes(PATH), pathLink: a.bytes(C.BTRFS_SEND_A_PATH_LINK),
}));
for (const cmd of [C.BTRFS_SEND_C_UNLINK, C.BTRFS_SEND_C_RMDIR] as const) {
  def(cmd, [PATH], (a) => ({ cmd, path: a.bytes(PATH) }));
}
def(C.BTRFS_SEND_C_SET_XATTR, [PATH, C.BTRFS_SEND_A_XATTR_NAME, C.BTRFS_SEND_A_XATTR_DATA], (a) => ({
  cmd: C.BTRFS_SEND_C_SET_XATTR, path: a.bytes(PATH), name: a.bytes(C.BTRFS_SEND_A_XATTR_NAME),
  data: a.bytes(C.BTRFS_SEND_A_XATTR_DATA),
}));
def(C.BTRFS_SEND_C_REMOVE_XATTR, [PATH, C.BTRFS_SEND_A_XATTR_NAME], (a) => ({
  cmd: C.BTRFS_SEND_C_REMOVE_XATTR, path: a.bytes(PATH), name: a.bytes(C.BTRFS_SEND_A_XATTR_NAME),
}));
def(C.BTRFS_SEND_C_WRITE, [PATH, C.BTRFS_SEND_A_FILE_OFFSET, C.BTRFS_SEND_A_DATA], (a) => ({
  cmd: C.BTRFS_SEND_C_WRITE, path: a.bytes(PATH), fileOffset: a.u64(C.BTRFS_SEND_A_FILE_OFFSET), data: a.bytes(C.BTRFS_SEND_A_DATA),
}));
// The kernel puts FILE_OFFSET and CLONE_LEN before PATH here (send_clone).
def(C.BTRFS_SEND_C_CLONE, [C.BTRFS_SEND_A_FILE_OFFSET, C.BTRFS_SEND_A_CLONE_LEN, PATH, C.BTRFS_SEND_A_CLONE_UUID,
  C.BTRFS_SEND_A_CLONE_CTRANSID, C.BTRFS_SEND_A_CLONE_PATH, C.BTRFS_SEND_A_CLONE_OFFSET], (a) => ({
  cmd: C.BTRFS_SEND_C_CLONE, path: a.bytes(PATH), fileOffset: a.u64(C.BTRFS_SEND_A_FILE_OFFSET),
  cloneLen: a.u64(C.BTRFS_SEND_A_CLONE_LEN), cloneUuid: a.uuid(C.BTRFS_SEND_A_CLONE_UUID),
  cloneCtransid: a.u64(C.BTRFS_SEND_A_CLONE_CTRANSID), clonePath: a.bytes(C.BTRFS_SEND_A_CLONE_PATH),
  cloneOffset: a.u64(C.BTRFS_SEND_A_CLONE_OFFSET),
}));
def(C.BTRFS_SEND_C_TRUNCATE, [PATH, C.BTRFS_SEND_A_SIZE], (a) => ({
  cmd: C.BTRFS_SEND_C_TRUNCATE, path: a.bytes(PATH), size: a.u64(C.BTRFS_SEND_A_SIZE),
}));
def(C.BTRFS_SEND_C_CHMOD, [PATH, MODE], (a) => ({ cmd: C.BTRFS_SEND_C_CHMOD, path: a.bytes(PATH), mode: a.u64(MODE) }));
def(C.BTRFS_SEND_C_CHOWN, [PATH, C.BTRFS_SEND_A_UID, C.BTRFS_SEND_A_GID], (a) => ({
  cmd: C.BTRFS_SEND_C_CHOWN, path: a.bytes(PATH), uid: a.u64(C.BTRFS_SEND_A_UID), gid: a.u64(C.BTRFS_SEND_A_GID),
}));
def(C.BTRFS_SEND_C_UTIMES, [PATH, C.BTRFS_SEND_A_ATIME, C.BTRFS_SEND_A_MTIME, C.BTRFS_SEND_A_CTIME, C.BTRFS_SEND_A_OTIME], (a) => {
  const c: SendCommand = {
    cmd: C.BTRFS_SEND_C_UTIMES, path: a.bytes(PATH), atime: a.timespec(C.BTRFS_SEND_A_ATIME),
    mtime: a.timespec(C.BTRFS_SEND_A_MTIME), ctime: a.timespec(C.BTRFS_SEND_A_CTIME),
  };
  if (a.has(C.BTRFS_SEND_A_OTIME)) c.otime = a.timespec(C.BTRFS_SEND_A_OTIME);
  return c;
});
def(C.BTRFS_SEND_C_END, [], () => ({ cmd: C.BTRFS_SEND_C_END }));
def(C.BTRFS_SEND_C_UPDATE_EXTENT, [PATH, C.BTRFS_SEND_A_FILE_OFFSET, C.BTRFS_SEND_A_SIZE], (a) => ({
  cmd: C.BTRFS_SEND_C_UPDATE_EXTENT, path: a.bytes(PATH), fileOffset: a.u64(C.BTRFS_SEND_A_FILE_OFFSET), size: a.u64(C.BTRFS_SEND_A_SIZE),
}));
def(C.BTRFS_SEND_C_FALLOCATE, [PATH, C.BTRFS_SEND_A_FALLOCATE_MODE, C.BTRFS_SEND_A_FILE_OFFSET, C.BTRFS_SEND_A_SIZE], (a) => ({
  cmd: C.BTRFS_SEND_C_FALLOCATE, path: a.bytes(PATH), mode: a.u32(C.BTRFS_SEND_A_FALLOCATE_MODE),
  fileOffset: a.u64(C.BTRFS_SEND_A_FILE_OFFSET), size: a.u64(C.BTRFS_SEND_A_SIZE),
}));
def(C.BTRFS_SEND_C_FILEATTR, [PATH, C.BTRFS_SEND_A_FILEATTR], (a) => ({
  cmd: C.BTRFS_SEND_C_FILEATTR, path: a.bytes(PATH), fileattr: a.u64(C.BTRFS_SEND_A_FILEATTR),
}));
def(C.BTRFS_SEND_C_ENCODED_WRITE, [PATH, C.BTRFS_SEND_A_FILE_OFFSET, C.BTRFS_SEND_A_UNENCODED_FILE_LEN,
  C.BTRFS_SEND_A_UNENCODED_LEN, C.BTRFS_SEND_A_UNENCODED_OFFSET, C.BTRFS_SEND_A_COMPRESSION,
  C.BTRFS_SEND_A_ENCRYPTION, C.BTRFS_SEND_A_DATA], (a) => {
  const c: SendCommand = {
    cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: a.bytes(PATH), fileOffset: a.u64(C.BTRFS_SEND_A_FILE_OFFSET),
    unencodedFileLen: a.u64(C.BTRFS_SEND_A_UNENCODED_FILE_LEN), unencodedLen: a.u64(C.BTRFS_SEND_A_UNENCODED_LEN),
    unencodedOffset: a.u64(C.BTRFS_SEND_A_UNENCODED_OFFSET), data: new Uint8Array(0),
  };
  const compression = a.optU32(C.BTRFS_SEND_A_COMPRESSION);
  const encryption = a.optU32(C.BTRFS_SEND_A_ENCRYPTION);
  if (compression !== undefined) c.compression = compression;
  if (encryption !== undefined) c.encryption = encryption;
  c.data = a.bytes(C.BTRFS_SEND_A_DATA);
  return c;
});
def(C.BTRFS_SEND_C_ENABLE_VERITY, [PATH, C.BTRFS_SEND_A_VERITY_ALGORITHM, C.BTRFS_SEND_A_VERITY_BLOCK_SIZE,
  C.BTRFS_SEND_A_VERITY_SALT_DATA, C.BTRFS_SEND_A_VERITY_SIG_DATA], (a) => ({
  cmd: C.BTRFS_SEND_C_ENABLE_VERITY, path: a.bytes(PATH), algorithm: a.u8(C.BTRFS_SEND_A_VERITY_ALGORITHM),
  blockSize: a.u32(C.BTRFS_SEND_A_VERITY_BLOCK_SIZE), salt: a.bytes(C.BTRFS_SEND_A_VERITY_SALT_DATA),
  sig: a.bytes(C.BTRFS_SEND_A_VERITY_SIG_DATA),
}));

/** Builds the typed command; unknown ids come back as UnknownCmd with their raw payload. */
export function decodeCommand(cmd: number, payload: Uint8Array, attrs: AttrTable | undefined, meta: CommandMeta): SendCommand & { meta: CommandMeta } {
  const b = BUILDERS.get(cmd);
  if (b === undefined || attrs === undefined) {
    if (attrs) meta.attrOrder = attrs.order;
    return { cmd, unknown: true, payload, meta };
  }
  const c = b.build(attrs) as SendCommand & { meta: CommandMeta };
  meta.attrOrder = attrs.order;
  const extra = attrs.extras(b.attrs);
  if (extra) meta.extraAttrs = extra;
  c.meta = meta;
  return c;
}

export function isKnownCommand(cmd: number): boolean {
  return BUILDERS.has(cmd);
}

/** The attribute types a command defines, in the order the kernel emits them. */
export function commandAttrs(cmd: number): readonly number[] {
  return BUILDERS.get(cmd)?.attrs ?? [];
}
