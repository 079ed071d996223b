import { ReachPass } from '../qgroup-reach.js';
import {
  BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_QGROUP_INFO_KEY, BTRFS_QGROUP_LIMIT_KEY, BTRFS_QGROUP_STATUS_FLAG_ON,
  BTRFS_QGROUP_STATUS_VERSION, BTRFS_QUOTA_TREE_OBJECTID,
} from '../structs/constants.js';
import { decodeFileExtentItem } from '../structs/fs-items.js';
import type { FilesystemModel } from './model.js';
import { encodeQgroupInfo, NO_QGROUP_LIMIT, QGROUP_STATUS_KEY, subvolumeIds } from './qgroups.js';

/**
 * Exact qgroup counts, for the images this writer makes whole (mkfs -R quota, as mkfs.btrfs 6.2 makes
 * them: quotas on, every level-0 qgroup counted, no rescan needed). A subvolume's qgroup refers to every
 * tree block reachable from its root and every data extent its file extents point at, each counted once
 * at its full size (disk_num_bytes; compressed counts equal the plain ones, as the kernel keeps them);
 * exclusive is what no other subvolume reaches. Run before a commit, after the last change to the
 * subvolume trees (the commit itself changes only the root, extent, free space, chunk and dev trees).
 * The cost is a pass over every subvolume tree (qgroup-reach.ts, as `qgroup show` and `quota rescan`
 * count): for a filesystem made in one go, not for each receive, which marks the qgroups inconsistent
 * instead (qgroups.ts).
 */

export function countQgroups(fs: FilesystemModel): void {
  const subvols = subvolumeIds(fs);
  const pass = new ReachPass(BigInt(fs.nodesize));
  for (const id of subvols) {
    const root = fs.trees.get(id)!.engine.root;
    pass.addRoot(id, root.bytenr, root.level, root.generation);
  }
  for (const b of pass.blocks()) {
    const blk = fs.store.read(b.bytenr, { level: b.level, generation: b.generation, owner: b.owner });
    if (b.level > 0) {
      for (let i = 0; i < blk.nritems; i++) pass.child(b.level, blk.ptrs[i]!, blk.ptrGens[i]!, b.owner);
      continue;
    }
    for (let i = 0; i < blk.nritems; i++) {
      const data = blk.data[i]!;
      if (blk.keys[i]!.type !== BTRFS_EXTENT_DATA_KEY || data[20] === BTRFS_FILE_EXTENT_INLINE) continue;
      const fe = decodeFileExtentItem(data);
      if (fe.disk_bytenr !== 0n) pass.dataExtent(fe.disk_bytenr, fe.disk_num_bytes);
    }
  }
  writeQgroupCounts(fs, pass.subvolumeCounts(subvols));
}

/**
 * Counts (`referenced`, `exclusive` by qgroup id, whatever level) into the quota tree as a finished rescan
 * leaves them: the status on and consistent at this commit's generation, each group's info item with its
 * counts (compressed equal to plain, as the kernel keeps them), a group without a limit item given one
 * with no limits. Only right when nothing the counts cover changes before the commit.
 */
export function writeQgroupCounts(fs: FilesystemModel, counts: ReadonlyMap<bigint, { referenced: bigint; exclusive: bigint }>): void {
  const quota = fs.tree(BTRFS_QUOTA_TREE_OBJECTID);
  // btrfs_qgroup_status_item: version, generation, flags, rescan progress
  const status = new Uint8Array(32);
  const sv = new DataView(status.buffer);
  sv.setBigUint64(0, BTRFS_QGROUP_STATUS_VERSION, true);
  sv.setBigUint64(8, fs.transid, true);
  sv.setBigUint64(16, BTRFS_QGROUP_STATUS_FLAG_ON, true);
  quota.put(QGROUP_STATUS_KEY, status);
  for (const [id, c] of counts) {
    quota.put({ objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: id }, encodeQgroupInfo(fs.transid, c.referenced, c.exclusive));
    const limit = { objectid: 0n, type: BTRFS_QGROUP_LIMIT_KEY, offset: id };
    if (!quota.get(limit)) quota.put(limit, NO_QGROUP_LIMIT);
  }
}
