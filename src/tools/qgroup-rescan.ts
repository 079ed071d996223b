import { ImageError } from '../errors.js';
import { BTRFS_QUOTA_TREE_OBJECTID } from '../image/structs/constants.js';
import { changeImage } from '../receive/image-file.js';
import { readCommitted } from './committed-image.js';
import { qgroupUsage, type QgroupRow } from './qgroup-usage.js';

/**
 * `btrfs quota rescan -w` without a mount: every quota group's usage counted from the committed trees
 * (qgroup-usage.ts) and written into the quota tree, its status consistent again — what a receive leaves
 * marked inconsistent (the writer does not account its changes). One commit that changes no subvolume
 * tree, so the counts still hold after it; the image as it was if anything fails. Refused where quotas
 * are not enabled, as btrfs quota rescan refuses.
 */
export async function rescanQgroups(image: string): Promise<QgroupRow[]> {
  return changeImage(image, async (real, fs) => {
    // (counted from the file as committed: a log the writer's open replays would not be in the counts)
    const rows = await readCommitted(real, image, async (img) => {
      if (!(await img.reader.rootItem(BTRFS_QUOTA_TREE_OBJECTID))) {
        throw new ImageError('QUOTA_DISABLED', `${image}: quotas are not enabled (btrfs quota enable)`);
      }
      // the kernel's cleaner takes a deleted subvolume's extents out of the counts as it drops its tree:
      // counts made without that tree would go below zero then
      const dead = await img.deletedSubvolumes();
      if (dead.length) {
        throw new ImageError('QUOTA_PENDING_DELETE', `${image}: ${dead.length} deleted subvolume${dead.length === 1 ? ' is' : 's are'} not cleaned up yet (id ${dead.map((d) => d.id).join(', ')}): mount it until \`btrfs subvolume sync\` returns, then rescan`);
      }
      return qgroupUsage(img);
    });
    fs.qgroupCounts = new Map(rows.map((r) => [r.qgroupid, r]));
    return rows;
  });
}
