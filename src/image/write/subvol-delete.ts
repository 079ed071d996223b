import { ImageError } from '../../errors.js';
import {
  U64_MAX, BTRFS_FS_TREE_OBJECTID, BTRFS_ROOT_BACKREF_KEY, BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_REF_KEY,
  BTRFS_ROOT_SUBVOL_RDONLY, BTRFS_ROOT_TREE_DIR_OBJECTID, BTRFS_ROOT_TREE_OBJECTID, BTRFS_UUID_KEY_RECEIVED_SUBVOL,
  BTRFS_UUID_KEY_SUBVOL,
} from '../structs/constants.js';
import { decodeRootRef } from '../structs/tree-items.js';
import { DEFAULT_ENTRY, nowTimespec } from './create.js';
import type { Filesystem } from './filesystem.js';
import { findDirEntry, getInode, unlinkEntry, updateInode } from './inode.js';
import { removeSubvolumeQgroup } from './qgroups.js';
import { getRootItem, removeUuidEntry, updateRootItem } from './subvol.js';
import { dropSubvolumeTree } from './subvol-drop.js';

/**
 * `btrfs subvolume delete` and the cleaner's drop after it, in one transaction: the subvolume's entry
 * leaves its parent directory (btrfs_unlink_subvol: DIR_ITEM, DIR_INDEX, ROOT_REF, ROOT_BACKREF, the
 * directory's size and times), its uuids leave the UUID tree, its tree is dropped (subvol-drop.ts) and
 * its ROOT_ITEM removed — no ORPHAN_ITEM is left for a cleaner, and the space is free at the commit.
 * Refused as the kernel refuses it (btrfs_delete_subvolume, may_destroy_subvol, btrfs_permission): the
 * top level, the default subvolume (EPERM), a subvolume holding others (ENOTEMPTY), one whose parent is
 * read-only (EROFS). Its own quota group goes too; the commit marks the others' counts inconsistent
 * (qgroups.ts: `quota rescan` counts them again).
 */
export function deleteSubvolume(fs: Filesystem, rootid: bigint): void {
  const root = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  const refuse = (code: string, why: string): never => {
    throw new ImageError(code, `cannot delete subvolume ${rootid}: ${why}`);
  };
  if (rootid === BTRFS_FS_TREE_OBJECTID) refuse('SUBVOL_TOP_LEVEL', 'it is the top-level subvolume');
  const item = getRootItem(fs, rootid);
  if (defaultSubvolume(fs) === rootid) refuse('SUBVOL_DEFAULT', 'it is the default subvolume (btrfs subvolume set-default another one first): Operation not permitted');
  const children = root.range({ objectid: rootid, type: BTRFS_ROOT_REF_KEY, offset: 0n }, { objectid: rootid, type: BTRFS_ROOT_REF_KEY, offset: U64_MAX });
  if (children.length) refuse('SUBVOL_NOT_EMPTY', `it holds subvolume${children.length > 1 ? 's' : ''} ${children.map((c) => c.key.offset).join(', ')} (delete those first): Directory not empty`);
  const backrefs = root.range({ objectid: rootid, type: BTRFS_ROOT_BACKREF_KEY, offset: 0n }, { objectid: rootid, type: BTRFS_ROOT_BACKREF_KEY, offset: U64_MAX });
  if (backrefs.length !== 1) refuse('SUBVOL_NO_ENTRY', `it has ${backrefs.length} ROOT_BACKREF items, not the one naming its directory entry`);
  const parent = backrefs[0]!.key.offset;
  const ref = decodeRootRef(backrefs[0]!.data);
  if (getRootItem(fs, parent).flags & BTRFS_ROOT_SUBVOL_RDONLY) refuse('SUBVOL_PARENT_READONLY', `its parent subvolume ${parent} is read-only: Read-only file system`);

  // btrfs_unlink_subvol: the entry (which must name this subvolume), the root refs, the directory's times
  const entry = unlinkEntry(fs, parent, ref.dirid, ref.name);
  if (entry.location.type !== BTRFS_ROOT_ITEM_KEY || entry.location.objectid !== rootid) {
    refuse('SUBVOL_NO_ENTRY', `the entry its ROOT_BACKREF names in directory ${ref.dirid} of subvolume ${parent} is not its own`);
  }
  root.delete({ objectid: parent, type: BTRFS_ROOT_REF_KEY, offset: rootid });
  root.delete({ objectid: rootid, type: BTRFS_ROOT_BACKREF_KEY, offset: parent });
  const dir = getInode(fs, parent, ref.dirid)!;
  const now = nowTimespec();
  updateInode(fs, parent, ref.dirid, { mtime: now, ctime: now, sequence: dir.sequence + 1n });
  // btrfs_update_inode → btrfs_update_root_times: the parent subvolume's change stamp
  updateRootItem(fs, parent, { ctransid: fs.transid, ctime: now });

  removeUuidEntry(fs, item.uuid, BTRFS_UUID_KEY_SUBVOL, rootid);
  if (item.received_uuid.some((b) => b !== 0)) removeUuidEntry(fs, item.received_uuid, BTRFS_UUID_KEY_RECEIVED_SUBVOL, rootid);

  dropSubvolumeTree(fs, rootid);
  root.delete(fs.rootItemKey(rootid)!);
  fs.forgetTree(rootid);
  removeSubvolumeQgroup(fs, rootid);
}

/** The subvolume the root tree directory's "default" entry names (5 without one). */
export function defaultSubvolume(fs: Filesystem): bigint {
  return findDirEntry(fs, BTRFS_ROOT_TREE_OBJECTID, BTRFS_ROOT_TREE_DIR_OBJECTID, DEFAULT_ENTRY)?.location.objectid ?? BTRFS_FS_TREE_OBJECTID;
}
