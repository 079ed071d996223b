import { ImageError } from '../../errors.js';
import {
  U64_MAX, BTRFS_FEATURE_INCOMPAT_DEFAULT_SUBVOL, BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID, BTRFS_FT_DIR, BTRFS_INODE_ITEM_KEY, BTRFS_INODE_REF_KEY,
  BTRFS_INODE_ROOT_ITEM_INIT,
  BTRFS_LAST_FREE_OBJECTID, BTRFS_ROOT_BACKREF_KEY, BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_REF_KEY, BTRFS_ROOT_SUBVOL_RDONLY,
  BTRFS_ROOT_TREE_OBJECTID, BTRFS_UUID_KEY_RECEIVED_SUBVOL, BTRFS_UUID_KEY_SUBVOL, BTRFS_UUID_TREE_OBJECTID,
} from '../structs/constants.js';
import { type BtrfsTimespec, encodeInodeItem, encodeInodeRefs } from '../structs/fs-items.js';
import {
  type BtrfsRootItem, decodeRootItem, decodeUuidItem, rootItemInodeFlagsLow, encodeRootItem, encodeRootRef, encodeUuidItem, uuidTreeKey,
} from '../structs/tree-items.js';
import { dirInodeItem, nowTimespec, putDefaultEntry, randomUuid, subvolRootItem } from './create.js';
import type { Filesystem } from './filesystem.js';
import type { Key } from './items.js';
import { linkEntry } from './inode.js';
import { claimSubvolumeQgroup, skipQgroupIds } from './qgroups.js';
import { staleSnapshotKey } from '../read/subvols.js';

/**
 * Subvolumes: a tree with its own ROOT_ITEM, top directory 256, ROOT_REF/ROOT_BACKREF pair naming it in
 * its parent, a directory entry in the parent directory, and UUID tree entries (uuid, received uuid).
 */

export interface NewSubvolume {
  /** Tree and directory that get the entry (default: top-level subvolume 5, its directory 256). */
  parentRoot?: bigint;
  parentDir?: bigint;
  name: Uint8Array;
  uuid?: Uint8Array;
  parentUuid?: Uint8Array;
  /** Creation time (root item ctime/otime and the top directory's times). */
  time?: BtrfsTimespec;
  readonly?: boolean;
  /** Explicit subvolume id (default: next free id >= 256). */
  rootid?: bigint;
  /**
   * A snapshot: directory entry location offset = (u64)-1 (`btrfs subvolume list -s` tells snapshots by
   * it) and a ROOT_ITEM offset (snapshotKeyOffset).
   */
  snapshot?: boolean;
}

/**
 * The ROOT_ITEM key offset of a snapshot made in transaction `transid`: the generation its blocks start
 * from. The kernel's drop of a deleted subvolume (btrfs_drop_snapshot, do_walk_down) takes blocks of that
 * generation or older as not the subvolume's own and skips them when it moves the back references of
 * blocks the subvolume owns and shares to FULL_BACKREF. The kernel's snapshot is made at the commit of
 * its transaction and changed only in later ones, so it keys it with that transaction; a receive here
 * makes the snapshot and changes it in one transaction, and blocks the snapshot owns have the snapshot's
 * own generation: keyed with it, the kernel's delete of such a snapshot left references by the deleted
 * tree behind (btrfs check: "owner ref check failed", "root N has no tree block found"). The transaction
 * before: the snapshot is the source as that one committed it, and every block of its own is newer.
 */
export function snapshotKeyOffset(transid: bigint): bigint {
  return transid - 1n;
}

/**
 * Snapshots an earlier btrfs-ts received keyed with their own transaction (see snapshotKeyOffset): their
 * otransid and rtransid are that transaction too, which no kernel receive leaves (it receives into the
 * snapshot after the commit that made it). Whether the ROOT_ITEM at `key` is one (open.ts asks as it
 * registers each tree); fixSnapshotKeys rekeys them.
 */
export function needsSnapshotKeyFix(key: Key, data: Uint8Array): boolean {
  return key.offset !== 0n && staleSnapshotKey(key.objectid, key.offset, decodeRootItem(data));
}

/** The ROOT_ITEMs at `keys` moved to snapshotKeyOffset(their transid); the next commit writes them. */
export function fixSnapshotKeys(fs: Filesystem, keys: readonly Key[]): void {
  const t = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  for (const key of keys) {
    const data = t.get(key)!;
    t.delete(key);
    t.put({ ...key, offset: snapshotKeyOffset(key.offset) }, data);
  }
}

/**
 * Next free subvolume id: above every id the root tree mentions, like btrfs_find_free_objectid, and past
 * the quota groups left behind by deleted subvolumes, as the kernel's mount moves it (skipQgroupIds).
 */
export function nextRootId(fs: Filesystem): bigint {
  let max = BTRFS_FIRST_FREE_OBJECTID - 1n;
  // (trees above LAST_FREE are the reloc and log trees' ids, never held here: open refuses the first)
  const held = fs.highestTreeId();
  if (held >= BTRFS_FIRST_FREE_OBJECTID && held <= BTRFS_LAST_FREE_OBJECTID) max = held;
  const last = fs.tree(BTRFS_ROOT_TREE_OBJECTID).last({ objectid: BTRFS_LAST_FREE_OBJECTID, type: 255, offset: U64_MAX });
  if (last && last.key.objectid >= BTRFS_FIRST_FREE_OBJECTID && last.key.objectid > max) max = last.key.objectid;
  return skipQgroupIds(fs, max + 1n);
}

export function getRootItem(fs: Filesystem, rootid: bigint): BtrfsRootItem {
  const key = fs.rootItemKey(rootid);
  if (!key) throw new ImageError('IMAGE_NO_ROOT_ITEM', `subvolume ${rootid} has no ROOT_ITEM`);
  return decodeRootItem(fs.tree(BTRFS_ROOT_TREE_OBJECTID).get(key)!);
}

/** Patch root item fields (commit keeps bytenr/level/generation up to date by itself). */
export function updateRootItem(fs: Filesystem, rootid: bigint, patch: Partial<BtrfsRootItem>): void {
  const key = fs.rootItemKey(rootid)!;
  const cur = getRootItem(fs, rootid);
  fs.tree(BTRFS_ROOT_TREE_OBJECTID).put(key, encodeRootItem({ ...cur, ...patch }));
}

export function addUuidEntry(fs: Filesystem, uuid: Uint8Array, type: number, rootid: bigint): void {
  const t = fs.tree(BTRFS_UUID_TREE_OBJECTID);
  const key = uuidTreeKey(uuid, type);
  const prev = t.get(key);
  const ids = prev ? decodeUuidItem(prev) : [];
  if (!ids.includes(rootid)) t.put(key, encodeUuidItem([...ids, rootid]));
}

export function removeUuidEntry(fs: Filesystem, uuid: Uint8Array, type: number, rootid: bigint): void {
  const t = fs.tree(BTRFS_UUID_TREE_OBJECTID);
  const key = uuidTreeKey(uuid, type);
  const prev = t.get(key);
  if (!prev) return;
  const ids = decodeUuidItem(prev).filter((x) => x !== rootid);
  if (ids.length) t.put(key, encodeUuidItem(ids));
  else t.delete(key);
}

/** Subvolume ids recorded in the UUID tree for `uuid` (as its uuid, or as its received uuid). */
export function lookupUuid(fs: Filesystem, uuid: Uint8Array, received = false): bigint[] {
  const b = fs.tree(BTRFS_UUID_TREE_OBJECTID).get(uuidTreeKey(uuid, received ? BTRFS_UUID_KEY_RECEIVED_SUBVOL : BTRFS_UUID_KEY_SUBVOL));
  return b ? decodeUuidItem(b) : [];
}

/** Create an empty subvolume and its entry `name` in the parent directory; returns its id. */
export function createSubvolume(fs: Filesystem, o: NewSubvolume): bigint {
  const parentRoot = o.parentRoot ?? BTRFS_FS_TREE_OBJECTID;
  const parentDir = o.parentDir ?? BTRFS_FIRST_FREE_OBJECTID;
  const rootid = o.rootid ?? nextRootId(fs);
  if (fs.hasTree(rootid) || fs.rootItemKey(rootid)) throw new ImageError('IMAGE_TREE_EXISTS', `subvolume ${rootid} already exists`);
  const time = o.time ?? nowTimespec();
  const uuid = o.uuid ?? randomUuid();
  const gen = fs.transid;
  fs.createTree(rootid);
  const top = BTRFS_FIRST_FREE_OBJECTID;
  fs.tree(rootid).put({ objectid: top, type: BTRFS_INODE_ITEM_KEY, offset: 0n }, encodeInodeItem(dirInodeItem(gen, time)));
  fs.tree(rootid).put({ objectid: top, type: BTRFS_INODE_REF_KEY, offset: top }, encodeInodeRefs([{ index: 0n, name: new TextEncoder().encode('..') }]));
  fs.tree(rootid).madeDir(top);
  fs.tree(BTRFS_ROOT_TREE_OBJECTID).put({ objectid: rootid, type: BTRFS_ROOT_ITEM_KEY, offset: o.snapshot ? snapshotKeyOffset(gen) : 0n }, encodeRootItem(subvolRootItem(fs.nodesize, {
    uuid, parent_uuid: o.parentUuid ?? new Uint8Array(16), ctransid: gen, otransid: gen,
    ctime: time, otime: time, flags: o.readonly ? BTRFS_ROOT_SUBVOL_RDONLY : 0n,
  })));
  const index = linkEntry(fs, parentRoot, parentDir, o.name, { objectid: rootid, type: BTRFS_ROOT_ITEM_KEY, offset: o.snapshot ? U64_MAX : 0n }, BTRFS_FT_DIR);
  const ref = encodeRootRef({ dirid: parentDir, sequence: index, name: o.name });
  fs.tree(BTRFS_ROOT_TREE_OBJECTID).put({ objectid: parentRoot, type: BTRFS_ROOT_REF_KEY, offset: rootid }, ref);
  fs.tree(BTRFS_ROOT_TREE_OBJECTID).put({ objectid: rootid, type: BTRFS_ROOT_BACKREF_KEY, offset: parentRoot }, ref);
  addUuidEntry(fs, uuid, BTRFS_UUID_KEY_SUBVOL, rootid);
  claimSubvolumeQgroup(fs, rootid);
  return rootid;
}

/**
 * What BTRFS_IOC_SET_RECEIVED_SUBVOL does at the end of `btrfs receive`: record the sender's uuid and
 * transid, the receive transid and time, and index the received uuid in the UUID tree.
 */
export function setReceivedSubvol(fs: Filesystem, rootid: bigint, r: { receivedUuid: Uint8Array; stransid: bigint; stime?: BtrfsTimespec; rtime?: BtrfsTimespec }): void {
  const cur = getRootItem(fs, rootid);
  if (cur.received_uuid.some((b) => b !== 0)) removeUuidEntry(fs, cur.received_uuid, BTRFS_UUID_KEY_RECEIVED_SUBVOL, rootid);
  updateRootItem(fs, rootid, {
    received_uuid: r.receivedUuid, stransid: r.stransid, rtransid: fs.transid, stime: r.stime ?? cur.stime, rtime: r.rtime ?? nowTimespec(),
  });
  if (r.receivedUuid.some((b) => b !== 0)) addUuidEntry(fs, r.receivedUuid, BTRFS_UUID_KEY_RECEIVED_SUBVOL, rootid);
}

/** What `btrfs subvolume set-default` does: the "default" entry names `rootid`, and the feature says so. */
export function setDefaultSubvolume(fs: Filesystem, rootid: bigint): void {
  getRootItem(fs, rootid); // must exist
  putDefaultEntry(fs, rootid);
  fs.sb.incompat_flags |= BTRFS_FEATURE_INCOMPAT_DEFAULT_SUBVOL;
}

const ROOT_ITEM_INIT_LOW = Number(BTRFS_INODE_ROOT_ITEM_INIT); // bit 31: in the flags' low 32 bits

/**
 * Root items of subvolume trees written without BTRFS_INODE_ROOT_ITEM_INIT (by btrfs-ts before it set
 * the flag, or by mkfs.btrfs for the fs tree) get it, keeping their flags: the kernel would otherwise
 * clear RDONLY when it loads them. Whether the ROOT_ITEM of tree `id` needs it (open.ts asks as it
 * registers each tree: one pass over the root items, not two).
 */
export function needsRootItemInit(id: bigint, data: Uint8Array): boolean {
  if (id !== BTRFS_FS_TREE_OBJECTID && (id < BTRFS_FIRST_FREE_OBJECTID || id > BTRFS_LAST_FREE_OBJECTID)) return false;
  return (rootItemInodeFlagsLow(data) & ROOT_ITEM_INIT_LOW) === 0;
}

/** The flag set in the ROOT_ITEMs at `keys` (needsRootItemInit). Only the model changes; the next commit writes them. */
export function initRootItems(fs: Filesystem, keys: readonly Key[]): void {
  const t = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
  for (const key of keys) {
    const item = decodeRootItem(t.get(key)!);
    t.put(key, encodeRootItem({ ...item, inode: { ...item.inode, flags: item.inode.flags | BTRFS_INODE_ROOT_ITEM_INIT } }));
  }
}

export function setSubvolReadonly(fs: Filesystem, rootid: bigint, readonly: boolean): void {
  const cur = getRootItem(fs, rootid);
  updateRootItem(fs, rootid, { flags: readonly ? cur.flags | BTRFS_ROOT_SUBVOL_RDONLY : cur.flags & ~BTRFS_ROOT_SUBVOL_RDONLY });
}
