import { ImageError } from '../../errors.js';
import {
  U64_MAX, BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID, BTRFS_FT_DIR, BTRFS_LAST_FREE_OBJECTID, BTRFS_ROOT_BACKREF_KEY,
  BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_REF_KEY, BTRFS_ROOT_SUBVOL_RDONLY, BTRFS_ROOT_TREE_OBJECTID, BTRFS_UUID_KEY_RECEIVED_SUBVOL,
  BTRFS_UUID_KEY_SUBVOL,
} from '../structs/constants.js';
import type { BtrfsTimespec } from '../structs/fs-items.js';
import { splitPath } from '../read/inodes.js';
import { type BtrfsRootItem, encodeRootItem, encodeRootRef } from '../structs/tree-items.js';
import { nowTimespec, randomUuid } from './create.js';
import type { Filesystem } from './filesystem.js';
import { findDirEntry, getInode, getXattr, linkEntry, setXattr, updateInode } from './inode.js';
import { inheritSnapshotQgroup, newSubvolumeQgroup } from './qgroups.js';
import { addUuidEntry, createSubvolume, getRootItem, nextRootId, setReceivedSubvol, setSubvolReadonly, updateRootItem } from './subvol.js';

/**
 * `btrfs subvolume snapshot`, `subvolume create` and `property set ro` on the writer's model, as the kernel
 * does them in one transaction (create_pending_snapshot, create_subvol, btrfs_ioctl_subvol_setflags with
 * btrfs-progs' clearing of the received uuid). The caller checks names and permissions (tools/subvolume-ops.ts).
 */

/** Where a new subvolume's entry goes: a directory of a subvolume tree, and its name there. */
export interface SubvolPlace {
  parentRoot: bigint;
  parentDir: bigint;
  name: Uint8Array;
}

const ZERO_TS: BtrfsTimespec = { sec: 0n, nsec: 0 };
const isEmptyUuid = (u: Uint8Array): boolean => u.every((b) => b === 0);

/**
 * The parent directory of a new entry, as btrfs_add_link / create_pending_snapshot leave it: new times, one
 * more change; and its subvolume's change stamp (btrfs_update_inode → btrfs_update_root_times: ctransid this
 * transaction, ctime now).
 */
function touchDir(fs: Filesystem, root: bigint, dir: bigint, now: BtrfsTimespec): void {
  const d = getInode(fs, root, dir)!;
  updateInode(fs, root, dir, { mtime: now, ctime: now, sequence: d.sequence + 1n });
  updateRootItem(fs, root, { ctransid: fs.transid, ctime: now });
}

/**
 * A snapshot of subvolume `source` (5 too) named `at.name`, as create_pending_snapshot makes it: the new
 * root item is the source's (its inode, ctransid and ctime, bytes_used) with last_snapshot, generation and
 * otransid this transaction, otime now, a new uuid and the source's as parent uuid; read-only or not as
 * asked; a writable one loses the received uuid, stransid, rtransid and their times (a read-only one keeps
 * them and is indexed under its received uuid too). Its ROOT_ITEM is keyed with this transaction: nothing
 * of the snapshot changes in it (unlike receive's, see snapshotKeyOffset). The new tree's root is a copy
 * of the source's root block sharing every block below (fs.shareTree); the entry is linked afterwards, so
 * a snapshot placed inside its own source does not hold its own entry (the kernel links it after
 * btrfs_copy_root too). The source's root item gets last_snapshot. With quotas on, the snapshot's qgroup
 * is the kernel's btrfs_qgroup_inherit result (qgroups.ts inheritSnapshotQgroup).
 */
export function makeSnapshot(fs: Filesystem, source: bigint, at: SubvolPlace & { readonly?: boolean; time?: BtrfsTimespec }): bigint {
  const src = getRootItem(fs, source);
  const transid = fs.transid;
  const now = at.time ?? nowTimespec();
  const id = nextRootId(fs);
  if (fs.hasTree(id) || fs.rootItemKey(id)) throw new ImageError('IMAGE_TREE_EXISTS', `subvolume ${id} already exists`);
  updateRootItem(fs, source, { last_snapshot: transid });
  const item: BtrfsRootItem = {
    ...src,
    last_snapshot: transid, refs: 1, drop_progress: { objectid: 0n, type: 0, offset: 0n }, drop_level: 0,
    flags: at.readonly ? src.flags | BTRFS_ROOT_SUBVOL_RDONLY : src.flags & ~BTRFS_ROOT_SUBVOL_RDONLY,
    generation_v2: transid, uuid: randomUuid(), parent_uuid: src.uuid, otime: now, otransid: transid,
    ...(at.readonly ? {} : { received_uuid: new Uint8Array(16), stime: ZERO_TS, rtime: ZERO_TS, stransid: 0n, rtransid: 0n }),
  };
  fs.createTree(id);
  const root = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  root.put({ objectid: id, type: BTRFS_ROOT_ITEM_KEY, offset: transid }, encodeRootItem(item));
  fs.shareTree(source, id);

  const index = linkEntry(fs, at.parentRoot, at.parentDir, at.name, { objectid: id, type: BTRFS_ROOT_ITEM_KEY, offset: U64_MAX }, BTRFS_FT_DIR);
  const ref = encodeRootRef({ dirid: at.parentDir, sequence: index, name: at.name });
  root.put({ objectid: at.parentRoot, type: BTRFS_ROOT_REF_KEY, offset: id }, ref);
  root.put({ objectid: id, type: BTRFS_ROOT_BACKREF_KEY, offset: at.parentRoot }, ref);
  touchDir(fs, at.parentRoot, at.parentDir, now);
  addUuidEntry(fs, item.uuid, BTRFS_UUID_KEY_SUBVOL, id);
  if (!isEmptyUuid(item.received_uuid)) addUuidEntry(fs, item.received_uuid, BTRFS_UUID_KEY_RECEIVED_SUBVOL, id);
  inheritSnapshotQgroup(fs, source, id);
  return id;
}

const COMPRESSION_PROP = new TextEncoder().encode('btrfs.compression');

/**
 * An empty subvolume, as create_subvol makes it (createSubvolume), its parent directory's times updated.
 * Its top directory inherits the compression property of the subvolume holding it (of that subvolume's
 * top directory, not of the directory it is made in: btrfs_subvol_inherit_props; the kernel's own
 * subvolume shows the same xattr and no inode flag on disk).
 */
export function makeSubvolume(fs: Filesystem, at: SubvolPlace & { time?: BtrfsTimespec }): bigint {
  const time = at.time ?? nowTimespec();
  const id = createSubvolume(fs, { parentRoot: at.parentRoot, parentDir: at.parentDir, name: at.name, time });
  const prop = getXattr(fs, at.parentRoot, getRootItem(fs, at.parentRoot).root_dirid, COMPRESSION_PROP);
  if (prop) setXattr(fs, id, getRootItem(fs, id).root_dirid, COMPRESSION_PROP, prop);
  newSubvolumeQgroup(fs, id);
  touchDir(fs, at.parentRoot, at.parentDir, time);
  return id;
}

/**
 * `btrfs property set SUBVOL ro VALUE`: the root item's RDONLY flag (BTRFS_IOC_SUBVOL_SETFLAGS changes
 * nothing else, not even ctransid). `clearReceived`: what btrfs-progs does after it with -f on a received
 * subvolume going read-write (BTRFS_IOC_SET_RECEIVED_SUBVOL with zeroes): received uuid, stransid and stime
 * zero, rtransid this transaction, rtime now, the received uuid out of the UUID tree.
 */
export function setReadonlyProperty(fs: Filesystem, rootid: bigint, readonly: boolean, clearReceived = false): void {
  setSubvolReadonly(fs, rootid, readonly);
  if (clearReceived) setReceivedSubvol(fs, rootid, { receivedUuid: new Uint8Array(16), stransid: 0n, stime: ZERO_TS, rtime: nowTimespec() });
}

/** What a path names in the writer's model. */
export interface ModelPlace {
  root: bigint;
  ino: bigint;
  /** The root directory of subvolume `root`, reached by its entry (or the top level itself). */
  subvolume: boolean;
  /**
   * An entry of a snapshot for a subvolume nested in its source, which was not snapshotted with it: the
   * kernel shows an empty directory there that takes no new entries.
   */
  placeholder?: boolean;
}

const isFsTree = (id: bigint): boolean => id === BTRFS_FS_TREE_OBJECTID || (id >= BTRFS_FIRST_FREE_OBJECTID && id <= BTRFS_LAST_FREE_OBJECTID);

/**
 * `path` (from the top level, as `ls` takes it; '.' components skipped, '..' refused) looked up in the
 * model, so that what this transaction created is found (`subvolume create IMAGE a a/b`). undefined when
 * the last component is missing; a missing or non-directory component before it is an error.
 */
export function lookupModelPath(fs: Filesystem, path: string | Uint8Array): ModelPlace | undefined {
  const parts = splitPath(path);
  const shown = typeof path === 'string' ? path : new TextDecoder().decode(path);
  let at: ModelPlace = { root: BTRFS_FS_TREE_OBJECTID, ino: getRootItem(fs, BTRFS_FS_TREE_OBJECTID).root_dirid, subvolume: true };
  let walked = '';
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const name = new TextDecoder().decode(part);
    if (name === '.') continue;
    if (name === '..') throw new ImageError('IMAGE_BAD_PATH', `'..' is not supported in image paths`, { path: shown });
    const missing = (): ImageError => new ImageError('IMAGE_NO_ENTRY', `no such file or directory: ${walked}/${name}`, { path: shown });
    if (at.placeholder) {
      if (i === parts.length - 1) return undefined;
      throw missing();
    }
    const dir = getInode(fs, at.root, at.ino);
    if (!dir || (dir.mode & 0o170000) !== 0o040000) throw new ImageError('IMAGE_NOT_DIR', `${walked || '/'} is not a directory`, { path: shown });
    const e = findDirEntry(fs, at.root, at.ino, part);
    if (!e) {
      if (i === parts.length - 1) return undefined;
      throw missing();
    }
    if (e.location.type === BTRFS_ROOT_ITEM_KEY) {
      const sub = e.location.objectid;
      const linked = isFsTree(sub) && fs.rootItemKey(sub) !== undefined
        && fs.tree(BTRFS_ROOT_TREE_OBJECTID).get({ objectid: at.root, type: BTRFS_ROOT_REF_KEY, offset: sub }) !== undefined;
      at = linked ? { root: sub, ino: getRootItem(fs, sub).root_dirid, subvolume: true } : { root: at.root, ino: 0n, subvolume: false, placeholder: true };
    } else {
      at = { root: at.root, ino: e.location.objectid, subvolume: false };
    }
    walked += `/${name}`;
  }
  return at;
}

/** Whether the place is a directory (a placeholder is one, that takes nothing). */
export function isModelDir(fs: Filesystem, p: ModelPlace): boolean {
  if (p.placeholder) return true;
  const ino = getInode(fs, p.root, p.ino);
  return ino !== undefined && (ino.mode & 0o170000) === 0o040000;
}
