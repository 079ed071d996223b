import { ReceiveError } from '../errors.js';
import type { BtrfsTimespec } from '../image/structs/fs-items.js';
import type * as T from '../stream/types.js';
import { S_IFIFO, S_IFSOCK } from './namespace.js';

/** What MKNOD, CHOWN and UTIMES ask of an inode, checked as the kernel's syscalls would check them. */

/** MKNOD makes devices, fifos and sockets only (mknod(2) would make a regular file of mode 0). */
export function mknodMode(c: T.CreateCmd): number {
  const mode = Number(c.mode ?? 0n);
  const t = mode & 0o170000;
  if (t !== 0o020000 && t !== 0o060000 && t !== S_IFIFO && t !== S_IFSOCK) {
    throw new ReceiveError('BAD_MKNOD_MODE', `MKNOD with mode 0${mode.toString(8)}: not a device, fifo or socket`);
  }
  return mode;
}

export function chownPatch(c: T.ChownCmd): { uid?: number; gid?: number } {
  if (c.uid > 0xffffffffn || c.gid > 0xffffffffn) throw new ReceiveError('BAD_OWNER', `uid ${c.uid} / gid ${c.gid} do not fit 32 bits`);
  // chown(2) with -1 leaves that id as it is, which is what btrfs receive's lchown call does
  const patch: { uid?: number; gid?: number } = {};
  if (c.uid !== 0xffffffffn) patch.uid = Number(c.uid);
  if (c.gid !== 0xffffffffn) patch.gid = Number(c.gid);
  return patch;
}

export function utimesPatch(c: T.UtimesCmd): { atime: BtrfsTimespec; mtime: BtrfsTimespec; ctime: BtrfsTimespec; otime?: BtrfsTimespec } {
  // utimensat refuses such nanoseconds (EINVAL); stored, they show as garbage times
  for (const t of [c.atime, c.mtime, c.ctime, c.otime]) if (t && t.nsec > 999_999_999) throw new ReceiveError('BAD_TIME', `a time with ${t.nsec} nanoseconds`);
  const patch: { atime: BtrfsTimespec; mtime: BtrfsTimespec; ctime: BtrfsTimespec; otime?: BtrfsTimespec } = {
    atime: ts(c.atime), mtime: ts(c.mtime), ctime: ts(c.ctime),
  };
  if (c.otime) patch.otime = ts(c.otime);
  return patch;
}

function ts(t: T.Timespec): BtrfsTimespec {
  return { sec: t.sec, nsec: t.nsec };
}
