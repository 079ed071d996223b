import { ReceiveError } from '../errors.js';
import {
  U64_MAX, BTRFS_DIR_INDEX_KEY, BTRFS_FIRST_FREE_OBJECTID, BTRFS_FT_DIR, BTRFS_INODE_ITEM_KEY, BTRFS_INODE_REF_KEY, BTRFS_ROOT_ITEM_KEY,
} from '../image/structs/constants.js';
import type { BtrfsInodeItem } from '../image/structs/fs-items.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { findDirEntry, getInode } from '../image/write/inode.js';
import { splitStreamPath } from './paths.js';

const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;

export const isDirMode = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;

/** A path inside the subvolume being received, resolved to its parent directory and (maybe) its inode. */
export interface Resolved {
  root: bigint;
  /** Inode of the directory holding the last component. */
  dir: bigint;
  /** Last component (empty for the subvolume root). */
  name: Uint8Array;
  /** The inode the path names, when it exists. */
  ino?: bigint;
  inode?: BtrfsInodeItem;
}

/**
 * Walks a stream path from the subvolume's top directory. Every intermediate component must be a real
 * directory of this subvolume: a symlink, a regular file or a nested subvolume in the middle of a path is
 * refused, so no stream path can lead outside the subvolume being received.
 */
export function resolvePath(fs: Filesystem, root: bigint, path: Uint8Array, what = 'path'): Resolved {
  const parts = splitStreamPath(path, what);
  let dir = BTRFS_FIRST_FREE_OBJECTID;
  if (parts.length === 0) {
    return { root, dir, name: new Uint8Array(0), ino: dir, inode: mustInode(fs, root, dir) };
  }
  for (let i = 0; i < parts.length - 1; i++) {
    const e = findDirEntry(fs, root, dir, parts[i]!);
    if (!e) throw new ReceiveError('PATH_NOT_FOUND', `${what}: directory ${show(parts.slice(0, i + 1))} does not exist`);
    if (e.location.type === BTRFS_ROOT_ITEM_KEY) {
      throw new ReceiveError('PATH_CROSSES_SUBVOLUME', `${what}: ${show(parts.slice(0, i + 1))} is another subvolume`);
    }
    if (e.type !== BTRFS_FT_DIR) {
      throw new ReceiveError('PATH_NOT_DIR', `${what}: ${show(parts.slice(0, i + 1))} is not a directory (type ${e.type}); paths never go through symlinks or files`);
    }
    dir = e.location.objectid;
  }
  const name = parts[parts.length - 1]!;
  const e = findDirEntry(fs, root, dir, name);
  if (!e) return { root, dir, name };
  if (e.location.type !== BTRFS_INODE_ITEM_KEY) {
    throw new ReceiveError('PATH_CROSSES_SUBVOLUME', `${what}: ${show(parts)} is another subvolume`);
  }
  return { root, dir, name, ino: e.location.objectid, inode: mustInode(fs, root, e.location.objectid) };
}

/** Like resolvePath, but the path must exist. */
export function resolveExisting(fs: Filesystem, root: bigint, path: Uint8Array, what = 'path'): Required<Resolved> {
  const r = resolvePath(fs, root, path, what);
  if (r.ino === undefined || r.inode === undefined) throw new ReceiveError('PATH_NOT_FOUND', `${what} does not exist`);
  return r as Required<Resolved>;
}

function mustInode(fs: Filesystem, root: bigint, ino: bigint): BtrfsInodeItem {
  const i = getInode(fs, root, ino);
  if (!i) throw new ReceiveError('IMAGE_INCONSISTENT', `directory entry points at missing inode ${ino}`);
  return i;
}

export function dirIsEmpty(fs: Filesystem, root: bigint, dir: bigint): boolean {
  return fs.tree(root).first({ objectid: dir, type: BTRFS_DIR_INDEX_KEY, offset: 0n }, { objectid: dir, type: BTRFS_DIR_INDEX_KEY, offset: U64_MAX }) === undefined;
}

/** True when `anc` is `ino` or one of its ancestor directories (walking INODE_REF parents). */
export function isAncestor(fs: Filesystem, root: bigint, anc: bigint, ino: bigint): boolean {
  const t = fs.tree(root);
  let cur = ino;
  for (let guard = 0; guard < 1_000_000; guard++) {
    if (cur === anc) return true;
    if (cur === BTRFS_FIRST_FREE_OBJECTID) return false;
    // directories have exactly one INODE_REF; its key offset is the parent
    const ref = t.first({ objectid: cur, type: BTRFS_INODE_REF_KEY, offset: 0n }, { objectid: cur, type: BTRFS_INODE_REF_KEY, offset: U64_MAX });
    if (!ref) return false;
    cur = ref.key.offset;
  }
  throw new ReceiveError('IMAGE_INCONSISTENT', `directory parent chain of inode ${ino} does not end`);
}

function show(parts: Uint8Array[]): string {
  return JSON.stringify(parts.map((p) => Buffer.from(p).toString('latin1')).join('/'));
}

/** Stream RDEV is userspace dev_t (new_encode_dev); btrfs stores the kernel's MKDEV(major, minor). */
export function kernelDev(dev: bigint): bigint {
  const d = BigInt.asUintN(32, dev);
  const major = (d & 0xfff00n) >> 8n;
  const minor = (d & 0xffn) | ((d >> 12n) & 0xfff00n);
  return (major << 20n) | minor;
}
