import type { BlockDevice } from '../device.js';
import { dropTree } from '../engine/bulk.js';
import { BTRFS_ROOT_TREE_OBJECTID } from '../structs/constants.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { ROOT_ITEM_OFF } from '../structs/tree-items.js';
import { commitFilesystem } from './commit.js';
import { copyRoot, CowRefs } from './cow-refs.js';
import { fillHoles } from './holes.js';
import { FilesystemModel, type GrowthOptions } from './model.js';
import { countQgroups, writeQgroupCounts } from './qgroup-count.js';
import { markQgroupsInconsistent } from './qgroups.js';
import { ImageError } from '../../errors.js';

export { SZ_1M } from './chunk-alloc.js';
export { type GrowthOptions, isSubvolumeTree } from './model.js';
export { type CommittedTree, TreeHandle, TreeState } from './tree-state.js';

/**
 * The image writer's filesystem: the model (model.ts) plus what changes it as a whole — the commit
 * (commit.ts), which writes everything changed since the last one and then the superblocks (a crash at
 * any point leaves the previous commit intact), and snapshots sharing their source's blocks.
 */
export class Filesystem extends FilesystemModel {
  /** Reference counts and back references of the copy-on-write trees' blocks (extent tree items). */
  readonly refs: CowRefs;
  /**
   * Quotas on an image this writer makes whole (mkfs -R quota): each commit counts every qgroup exactly
   * (qgroup-count.ts) instead of marking them inconsistent for a rescan (qgroups.ts), as receive does.
   */
  countsQgroups = false;
  /**
   * Counts a rescan made of the committed trees (tools/qgroup-rescan.ts), written at the next commit in
   * place of the inconsistent mark: for a commit that changes no subvolume tree.
   */
  qgroupCounts: ReadonlyMap<bigint, { referenced: bigint; exclusive: bigint }> | undefined;

  constructor(device: BlockDevice, sb: BtrfsSuperBlock, metadataProfile: bigint, growth: GrowthOptions = {}) {
    let refs: CowRefs | undefined;
    super(device, sb, metadataProfile, growth, (m) => (refs = new CowRefs(m, m.metaSpace)));
    this.refs = refs!;
  }

  /** Write everything changed since the last commit and switch the superblocks to it (see commit.ts). */
  commit(): void {
    this.writeDelayedInodes(); // inode items changed in memory go into their trees before anything else
    fillHoles(this); // explicit hole extents first, on images without NO_HOLES
    if (this.countsQgroups) countQgroups(this);
    else if (this.qgroupCounts) writeQgroupCounts(this, this.qgroupCounts);
    else markQgroupsInconsistent(this); // quotas on: the status says a rescan must recount (qgroups.ts)
    commitFilesystem(this, this.refs.table);
  }

  /** Every tree's pending inode items into the tree (delayed-inodes.ts). */
  writeDelayedInodes(): void {
    for (const t of this.touched) t.writeInodes();
  }

  /**
   * Make copy-on-write tree `rootid` a snapshot of tree `source`: a copy of its root block sharing
   * everything below (btrfs_copy_root). What `rootid` held before is dropped.
   */
  shareTree(source: bigint, rootid: bigint): void {
    const src = this.trees.get(source)?.engine;
    const dst = this.trees.get(rootid);
    if (!src || !dst) throw new ImageError('IMAGE_INTERNAL', `cannot snapshot tree ${source} into ${rootid}`);
    this.trees.get(source)!.writeInodes(); // the snapshot shares the source's blocks as they are now
    dropTree(dst.engine!);
    dst.engine = copyRoot(this.refs, src, rootid);
    this.shareBytesUsed(source, rootid);
    this.store.trim();
  }

  /**
   * A snapshot's ROOT_ITEM starts with its source's bytes_used as it is now (create_pending_snapshot copies
   * the source's root item; btrfs_copy_root adds nothing): what the dropped tree and the root copy counted
   * for the snapshot does not apply.
   */
  private shareBytesUsed(source: bigint, rootid: bigint): void {
    const src = this.rootItemCopy(source);
    const dst = this.rootItemCopy(rootid);
    const used = new DataView(src.data.buffer).getBigUint64(ROOT_ITEM_OFF.bytes_used, true) + BigInt(this.store.peekUsedDelta(source) * this.nodesize);
    new DataView(dst.data.buffer).setBigUint64(ROOT_ITEM_OFF.bytes_used, used, true);
    this.store.takeUsedDelta(rootid);
    this.tree(BTRFS_ROOT_TREE_OBJECTID).put(dst.key, dst.data);
  }
}
