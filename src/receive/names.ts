import { escapePath } from '../dump/escape.js';
import { ReceiveError } from '../errors.js';
import {
  BTRFS_FIRST_FREE_OBJECTID, BTRFS_INODE_COMPRESS, BTRFS_INODE_NOCOMPRESS, BTRFS_INODE_NODATACOW, BTRFS_INODE_NODATASUM,
} from '../image/structs/constants.js';
import { nowTimespec } from '../image/write/create.js';
import { writeInlineExtent } from '../image/write/file-data.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { createInode, getInode, linkInode, unlinkEntry, updateInode } from '../image/write/inode.js';
import { sameBytes } from '../util/bytes.js';
import { deleteInode } from '../image/write/file-data.js';
import { dirIsEmpty, isAncestor, isDirMode, resolveExisting, resolvePath, S_IFLNK, S_IFREG } from './namespace.js';
import { checkDirBeforeChange, parentOf } from './size-checks.js';

/**
 * The namespace commands (MK*, SYMLINK, RENAME, LINK, UNLINK, RMDIR) with the kernel's rules: what may
 * replace what, what may not move where, when an inode goes away, and which times change.
 */

/** A new inode named `path`, created the way btrfs receive's syscalls create it (times "now"). */
export function createNode(fs: Filesystem, root: bigint, path: Uint8Array, mode: number, rdev = 0n): bigint {
  const c = createUnlinked(fs, root, path, mode, rdev);
  linkCreated(fs, root, c);
  return c.ino;
}

/** An inode made by createUnlinked, with the name it is to get. */
export interface Created {
  ino: bigint;
  dir: bigint;
  name: Uint8Array;
  /** The stream path, for a rename of it. */
  path: Uint8Array;
}

/**
 * createNode's checks and the inode, without the name yet: the caller links it (linkCreated) or, when a
 * RENAME of that path follows, gives it its final name at once (placeCreated). Path and name are copies
 * (the stream's buffers are reused).
 */
export function createUnlinked(fs: Filesystem, root: bigint, path: Uint8Array, mode: number, rdev = 0n): Created {
  const r = resolvePath(fs, root, path);
  if (r.ino !== undefined) throw new ReceiveError('PATH_EXISTS', 'path already exists');
  checkDirBeforeChange(fs, root, r.dir, parentOf(path));
  const now = nowTimespec();
  const flags = inheritedFlags(getInode(fs, root, r.dir)?.flags ?? 0n, mode);
  const ino = createInode(fs, root, { mode, rdev, flags, atime: now, mtime: now, ctime: now, otime: now });
  return { ino, dir: r.dir, name: r.name.slice(), path: path.slice() };
}

/**
 * What a new inode takes of its directory's flags (btrfs_inherit_iflags): COMPRESS or NOCOMPRESS, and
 * NODATACOW (with NODATASUM for a regular file). A send stream creates its new inodes in the top directory
 * of the subvolume, which a snapshot of a kernel-made subvolume may have with `chattr +C`: the kernel's
 * receive then makes every new file NODATACOW, and so does this one (file-data.ts writes them without
 * checksums or compression).
 */
function inheritedFlags(dirFlags: bigint, mode: number): bigint {
  let flags = 0n;
  if (dirFlags & BTRFS_INODE_NOCOMPRESS) flags |= BTRFS_INODE_NOCOMPRESS;
  else if (dirFlags & BTRFS_INODE_COMPRESS) flags |= BTRFS_INODE_COMPRESS;
  if (dirFlags & BTRFS_INODE_NODATACOW) {
    flags |= BTRFS_INODE_NODATACOW;
    if ((mode & 0o170000) === S_IFREG) flags |= BTRFS_INODE_NODATASUM;
  }
  return flags;
}

/** The name of an inode made by createUnlinked. */
export function linkCreated(fs: Filesystem, root: bigint, c: Created): void {
  linkInode(fs, root, c.dir, c.name, c.ino);
  touch(fs, root, c.dir);
}

/**
 * RENAME of a path createUnlinked made, to `toPath`, without its first name ever written: a send stream
 * creates every new inode under an orphan name in the top directory ("o257-7-0") and moves it to its
 * place by the next command, which was a DIR_ITEM, DIR_INDEX and INODE_REF put and deleted again per
 * file. The result is renameNode's: the orphan's directory changed ("now"), the name in place with the
 * DIR_INDEX it would have had (the orphan's, the highest, was given back by its unlink). Returns false,
 * having changed nothing, for the cases renameNode has more to do for (a destination that exists, is
 * the inode's own path or lies below it).
 */
export function placeCreated(fs: Filesystem, root: bigint, c: Created, toPath: Uint8Array): boolean {
  const below = toPath.length > c.path.length && toPath[c.path.length] === 0x2f;
  if ((below || toPath.length === c.path.length) && sameBytes(toPath.subarray(0, c.path.length), c.path)) return false;
  const to = resolvePath(fs, root, toPath, 'rename destination');
  if (to.ino !== undefined) return false;
  checkDirBeforeChange(fs, root, to.dir, parentOf(toPath));
  linkInode(fs, root, to.dir, to.name, c.ino);
  touch(fs, root, c.dir);
  touch(fs, root, to.dir);
  return true;
}

export function createSymlink(fs: Filesystem, root: bigint, path: Uint8Array, target: Uint8Array): void {
  if (target.length === 0 || target.includes(0)) throw new ReceiveError('BAD_SYMLINK', 'symlink target is empty or contains NUL');
  // symlink(2) takes at most PATH_MAX bytes with the NUL: longer ones fail btrfs check (inline extent
  // too large) and the kernel reads them cut at 4096 bytes
  if (target.length >= 4096) throw new ReceiveError('BAD_SYMLINK', `symlink target of ${target.length} bytes (at most 4095)`);
  const ino = createNode(fs, root, path, S_IFLNK | 0o777);
  // a symlink's target is always one uncompressed inline extent (the kernel's btrfs_symlink); it is
  // stored, never followed
  writeInlineExtent(fs, root, ino, target);
  updateInode(fs, root, ino, { size: BigInt(target.length) });
}

/** `forget(ino)` is told about an inode that goes away with the name it loses. */
export function renameNode(fs: Filesystem, root: bigint, fromPath: Uint8Array, toPath: Uint8Array, forget: (ino: bigint) => void = () => {}): void {
  const from = resolveExisting(fs, root, fromPath, 'rename source');
  if (from.ino === BTRFS_FIRST_FREE_OBJECTID) throw new ReceiveError('RENAME_ROOT', 'cannot rename the subvolume root');
  const to = resolvePath(fs, root, toPath, 'rename destination');
  const fromIsDir = isDirMode(from.inode.mode);
  if (fromIsDir && isAncestor(fs, root, from.ino, to.dir)) {
    throw new ReceiveError('RENAME_INTO_SELF', 'cannot move a directory into itself');
  }
  if (to.ino !== undefined) {
    if (to.ino === from.ino) return;
    const toIsDir = isDirMode(to.inode!.mode);
    if (toIsDir !== fromIsDir) throw new ReceiveError('RENAME_TYPE_MISMATCH', `rename ${fromIsDir ? 'directory over non-directory' : 'non-directory over directory'}`);
    if (toIsDir && !dirIsEmpty(fs, root, to.ino)) throw new ReceiveError('DIR_NOT_EMPTY', 'rename over a non-empty directory');
    if (toIsDir) checkDirBeforeChange(fs, root, to.ino, () => JSON.stringify(escapePath(toPath)));
  }
  checkDirBeforeChange(fs, root, from.dir, parentOf(fromPath));
  checkDirBeforeChange(fs, root, to.dir, parentOf(toPath));
  if (to.ino !== undefined) removeName(fs, root, to.dir, to.name, to.ino, forget);
  unlinkEntry(fs, root, from.dir, from.name);
  linkInode(fs, root, to.dir, to.name, from.ino);
  touch(fs, root, from.dir);
  touch(fs, root, to.dir);
  touch(fs, root, from.ino, false);
}

export function linkNode(fs: Filesystem, root: bigint, path: Uint8Array, targetPath: Uint8Array): void {
  const target = resolveExisting(fs, root, targetPath, 'link target');
  if (isDirMode(target.inode.mode)) throw new ReceiveError('LINK_TO_DIR', 'hard link to a directory');
  // BTRFS_LINK_MAX: the kernel says EMLINK; it also bounds the work one inode's names can cost
  if (target.inode.nlink >= 65535) throw new ReceiveError('TOO_MANY_LINKS', `link target already has ${target.inode.nlink} links (at most 65535)`);
  const r = resolvePath(fs, root, path);
  if (r.ino !== undefined) throw new ReceiveError('PATH_EXISTS', 'path already exists');
  checkDirBeforeChange(fs, root, r.dir, parentOf(path));
  linkInode(fs, root, r.dir, r.name, target.ino);
  touch(fs, root, r.dir);
  touch(fs, root, target.ino, false);
}

export function removeNode(fs: Filesystem, root: bigint, path: Uint8Array, how: 'unlink' | 'rmdir', forget: (ino: bigint) => void = () => {}): void {
  const r = resolveExisting(fs, root, path);
  const dir = isDirMode(r.inode.mode);
  if (how === 'unlink' && dir) throw new ReceiveError('IS_A_DIR', 'UNLINK of a directory');
  if (how === 'rmdir') {
    if (!dir) throw new ReceiveError('NOT_A_DIR', 'RMDIR of a non-directory');
    if (r.ino === BTRFS_FIRST_FREE_OBJECTID) throw new ReceiveError('RMDIR_ROOT', 'cannot remove the subvolume root');
    if (!dirIsEmpty(fs, root, r.ino)) throw new ReceiveError('DIR_NOT_EMPTY', 'RMDIR of a non-empty directory');
    // the kernel's rmdir goes by i_size (ENOTEMPTY above the empty size): it must agree with the entries
    checkDirBeforeChange(fs, root, r.ino, () => JSON.stringify(escapePath(path)));
  }
  checkDirBeforeChange(fs, root, r.dir, parentOf(path));
  removeName(fs, root, r.dir, r.name, r.ino, forget);
}

/** Drops one name; the inode goes with its last name (a directory with its only one). */
function removeName(fs: Filesystem, root: bigint, dir: bigint, name: Uint8Array, ino: bigint, forget: (ino: bigint) => void): void {
  unlinkEntry(fs, root, dir, name);
  touch(fs, root, dir);
  const left = getInode(fs, root, ino);
  if (left && (left.nlink === 0 || isDirMode(left.mode))) {
    forget(ino);
    deleteInode(fs, root, ino);
  }
}

/**
 * What the kernel does to a directory whose entries change (and to an inode whose links change): its
 * times become "now". The sender follows with UTIMES for every directory it changed, but not for the
 * top directory when only orphan names passed through it — there the kernel's result shows the receive
 * time too.
 */
function touch(fs: Filesystem, root: bigint, ino: bigint, dir = true): void {
  const now = nowTimespec();
  updateInode(fs, root, ino, dir ? { mtime: now, ctime: now } : { ctime: now });
}
