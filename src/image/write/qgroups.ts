import { cannotModify } from '../../errors.js';
import {
  U64_MAX, BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID, BTRFS_LAST_FREE_OBJECTID, BTRFS_QGROUP_INFO_KEY, BTRFS_QGROUP_LIMIT_KEY, BTRFS_QGROUP_RELATION_KEY,
  BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT, BTRFS_QGROUP_STATUS_FLAG_RESCAN, BTRFS_QGROUP_STATUS_KEY, BTRFS_QUOTA_TREE_OBJECTID,
  BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_TREE_OBJECTID,
} from '../structs/constants.js';
import type { FilesystemModel } from './model.js';

/**
 * Images with quotas enabled (a quota tree: `mkfs.btrfs -R quota`, `btrfs quota enable`). The writer
 * does not account what it adds to each qgroup; it does what the kernel does when its accounting cannot
 * be trusted (qgroup_mark_inconsistent): the status item gets BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT and
 * the commit's generation, and `btrfs quota rescan` recounts every qgroup and clears the flag. btrfs
 * check (6.2, qgroup_verify_all) reports no error for an inconsistent status: it prints "Rescan hasn't
 * been initialized, a difference in qgroup accounting is expected" and the differences it finds.
 * A subvolume this writer creates gets its level-0 qgroup, as btrfs_create_qgroup makes it at subvolume
 * creation: a QGROUP_INFO item (counts 0, the rescan fills them) and a QGROUP_LIMIT item (no limits).
 * A rescan in progress is refused on open: a resumed rescan would clear the flag without having
 * counted what was added behind its progress key.
 */
export const QGROUP_STATUS_KEY = { objectid: 0n, type: BTRFS_QGROUP_STATUS_KEY, offset: 0n };

/** The ids of the level-0 qgroups: the fs tree and every subvolume whose ROOT_ITEM the root tree holds. */
export function subvolumeIds(fs: FilesystemModel): bigint[] {
  const roots = fs.tree(BTRFS_ROOT_TREE_OBJECTID).entries(
    { objectid: BTRFS_FS_TREE_OBJECTID, type: BTRFS_ROOT_ITEM_KEY, offset: 0n },
    { objectid: BTRFS_LAST_FREE_OBJECTID, type: BTRFS_ROOT_ITEM_KEY, offset: U64_MAX },
  );
  const ids: bigint[] = [];
  for (const it of roots) {
    const id = it.key.objectid;
    if (it.key.type === BTRFS_ROOT_ITEM_KEY && (id === BTRFS_FS_TREE_OBJECTID || id >= BTRFS_FIRST_FREE_OBJECTID)) ids.push(id);
  }
  return ids;
}

/** Refuse (before any write) quota states the writer cannot leave right. */
export function checkQgroups(fs: FilesystemModel): void {
  if (!fs.hasTree(BTRFS_QUOTA_TREE_OBJECTID)) return;
  const status = fs.tree(BTRFS_QUOTA_TREE_OBJECTID).get(QGROUP_STATUS_KEY);
  const refuse = (why: string): never => {
    throw cannotModify('IMAGE_QUOTA', why);
  };
  // version, generation, flags, rescan progress (+ enable_gen with simple quotas, refused by features.ts)
  if (!status || status.length < 32) refuse(`its quota tree has ${status ? `a ${status.length}-byte` : 'no'} status item`);
  const flags = new DataView(status!.buffer, status!.byteOffset, status!.byteLength).getBigUint64(16, true);
  if (flags & BTRFS_QGROUP_STATUS_FLAG_RESCAN) refuse('a quota rescan is in progress (mount it with the kernel until `btrfs quota rescan -s` says none)');
}

/** Before each commit: the status is marked inconsistent at this generation, new subvolumes get qgroups. */
export function markQgroupsInconsistent(fs: FilesystemModel): void {
  if (!fs.hasTree(BTRFS_QUOTA_TREE_OBJECTID)) return;
  const quota = fs.tree(BTRFS_QUOTA_TREE_OBJECTID);
  const status = quota.get(QGROUP_STATUS_KEY)!.slice();
  const dv = new DataView(status.buffer, status.byteOffset, status.byteLength);
  dv.setBigUint64(8, fs.transid, true);
  dv.setBigUint64(16, dv.getBigUint64(16, true) | BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT, true);
  quota.put(QGROUP_STATUS_KEY, status);

  const missing = subvolumeIds(fs).filter((id) => !quota.get({ objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: id }));
  for (const id of missing) putQgroup(fs, id);
}

/**
 * The next subvolume id moved past the level-0 qgroups that outlive their subvolumes, as the kernel moves
 * its free objectid when it reads the quota tree at mount (btrfs_read_qgroup_config, since 6.10): kernels
 * before 6.10 left a deleted subvolume's qgroup behind, simple quotas keep one that still has usage, and
 * a new subvolume taking such an id would take over its limits and its place under higher-level groups.
 * Its test is `>`, in key order (a qgroup at exactly the next id is reused: claimSubvolumeQgroup resets it).
 */
export function skipQgroupIds(fs: FilesystemModel, next: bigint): bigint {
  if (!fs.hasTree(BTRFS_QUOTA_TREE_OBJECTID)) return next;
  const quota = fs.tree(BTRFS_QUOTA_TREE_OBJECTID);
  // the kernel meets each qgroup at its INFO item, or at its LIMIT item when it has none; only ids above
  // `next` can move it, and it only grows, so each kind is searched from there (not the whole quota tree)
  for (const type of [BTRFS_QGROUP_INFO_KEY, BTRFS_QGROUP_LIMIT_KEY]) {
    for (const it of quota.entries({ objectid: 0n, type, offset: next + 1n }, { objectid: 0n, type, offset: BTRFS_LAST_FREE_OBJECTID })) {
      const id = it.key.offset;
      // (btrfs_is_fstree: a subvolume id, level 0 — the levels above start at 1 << 48, far below LAST_FREE)
      if (it.key.type === type && id >> 48n === 0n && id > next) next = id + 1n;
    }
  }
  return next;
}

/**
 * A new subvolume whose id already has a qgroup (one left behind, at exactly the next id: skipQgroupIds)
 * gets it back empty, as btrfs_qgroup_inherit's add_qgroup_item rewrites an existing INFO and LIMIT item:
 * counts zero at this generation, no limits. Its relations stay, as the kernel keeps them.
 */
export function claimSubvolumeQgroup(fs: FilesystemModel, id: bigint): void {
  if (!fs.hasTree(BTRFS_QUOTA_TREE_OBJECTID)) return;
  const quota = fs.tree(BTRFS_QUOTA_TREE_OBJECTID);
  if (!quota.get({ objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: id }) && !quota.get({ objectid: 0n, type: BTRFS_QGROUP_LIMIT_KEY, offset: id })) return;
  putQgroup(fs, id);
}

/**
 * A btrfs_qgroup_info_item (generation, rfer, rfer_cmpr, excl, excl_cmpr) at `generation`; the compressed
 * counts equal the plain ones unless given, as the kernel keeps them.
 */
export function encodeQgroupInfo(generation: bigint, rfer: bigint, excl: bigint, rferCmpr = rfer, exclCmpr = excl): Uint8Array {
  const info = new Uint8Array(40);
  const dv = new DataView(info.buffer);
  dv.setBigUint64(0, generation, true);
  dv.setBigUint64(8, rfer, true);
  dv.setBigUint64(16, rferCmpr, true);
  dv.setBigUint64(24, excl, true);
  dv.setBigUint64(32, exclCmpr, true);
  return info;
}

/** btrfs_qgroup_limit_item (flags, max_rfer, max_excl, rsv_rfer, rsv_excl) with no limits. */
export const NO_QGROUP_LIMIT = new Uint8Array(40);

/** Level-0 qgroup `id` written anew: referenced and exclusive `counted` at this generation, no limits. */
function putQgroup(fs: FilesystemModel, id: bigint, counted = 0n): void {
  const quota = fs.tree(BTRFS_QUOTA_TREE_OBJECTID);
  quota.put({ objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: id }, encodeQgroupInfo(fs.transid, counted, counted));
  quota.put({ objectid: 0n, type: BTRFS_QGROUP_LIMIT_KEY, offset: id }, NO_QGROUP_LIMIT);
}

/**
 * A deleted subvolume's level-0 qgroup goes with it, as the kernel removes it once the subvolume is
 * dropped (btrfs_qgroup_cleanup_dropped_subvolume → btrfs_remove_qgroup): its info and limit items and
 * its relations to the groups above it, both directions. Those groups' counts are the next rescan's.
 */
export function removeSubvolumeQgroup(fs: FilesystemModel, id: bigint): void {
  if (!fs.hasTree(BTRFS_QUOTA_TREE_OBJECTID)) return;
  const quota = fs.tree(BTRFS_QUOTA_TREE_OBJECTID);
  quota.delete({ objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: id });
  quota.delete({ objectid: 0n, type: BTRFS_QGROUP_LIMIT_KEY, offset: id });
  for (const rel of quota.range({ objectid: id, type: BTRFS_QGROUP_RELATION_KEY, offset: 0n }, { objectid: id, type: BTRFS_QGROUP_RELATION_KEY, offset: U64_MAX })) {
    quota.delete(rel.key);
    quota.delete({ objectid: rel.key.offset, type: BTRFS_QGROUP_RELATION_KEY, offset: id });
  }
}

/**
 * A snapshot's level-0 qgroup as the kernel's btrfs_qgroup_inherit makes it (no qgroup_inherit given, full
 * accounting): the snapshot refers to what the source refers to; each has only its root block to itself
 * (excl = nodesize for both); the snapshot takes the source's limits. The items carry this transaction.
 * The commit still marks the status inconsistent (markQgroupsInconsistent): the other groups — the top
 * level's directory change, groups above the source — are not counted here; `quota rescan` counts them.
 */
export function inheritSnapshotQgroup(fs: FilesystemModel, srcid: bigint, dstid: bigint): void {
  if (!fs.hasTree(BTRFS_QUOTA_TREE_OBJECTID)) return;
  const quota = fs.tree(BTRFS_QUOTA_TREE_OBJECTID);
  const srcInfoKey = { objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: srcid };
  const srcInfo = quota.get(srcInfoKey);
  if (!srcInfo || srcInfo.length < 40) return; // no group for the source: the kernel inherits nothing either
  const nodesize = BigInt(fs.nodesize);
  const sv = new DataView(srcInfo.buffer, srcInfo.byteOffset, srcInfo.byteLength);
  const rfer = sv.getBigUint64(8, true);
  const rferCmpr = sv.getBigUint64(16, true);
  // both refer to what the source did; each has its root block alone
  quota.put(srcInfoKey, encodeQgroupInfo(fs.transid, rfer, nodesize, rferCmpr));
  quota.put({ objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: dstid }, encodeQgroupInfo(fs.transid, rfer, nodesize, rferCmpr));
  const limit = quota.get({ objectid: 0n, type: BTRFS_QGROUP_LIMIT_KEY, offset: srcid });
  quota.put({ objectid: 0n, type: BTRFS_QGROUP_LIMIT_KEY, offset: dstid }, limit && limit.length >= 40 ? limit.slice(0, 40) : NO_QGROUP_LIMIT);
}

/**
 * A new empty subvolume's level-0 qgroup as the kernel leaves it at the commit that creates it: its root
 * block referenced and exclusive (btrfs_qgroup_inherit makes the group empty; the accounting of the new
 * root block adds nodesize to both), no limits.
 */
export function newSubvolumeQgroup(fs: FilesystemModel, id: bigint): void {
  if (fs.hasTree(BTRFS_QUOTA_TREE_OBJECTID)) putQgroup(fs, id, BigInt(fs.nodesize));
}
