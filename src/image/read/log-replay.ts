import { ImageError } from '../../errors.js';
import { BTRFS_ROOT_ITEM_KEY, BTRFS_TREE_LOG_OBJECTID, type BtrfsKey, type LeafItem, decodeRootItem } from '../structs.js';
import type { ImageReader } from './image.js';
import { TreeOverlay } from './overlay.js';
import type { TreeRoot } from './tree.js';
import { SubvolReplay } from './log-replay-subvol.js';
import { U64_MAX } from '../structs/constants.js';

/**
 * Replays the tree log in memory, as the kernel does at mount (fs/btrfs/tree-log.c): for each subvolume
 * with a log tree, (1) logged inode items replace the subvolume's, directories first losing the entries
 * their logged index ranges no longer hold; (2) logged directory index entries are linked; (3) names
 * (inode refs and extended refs, dropping the names of the same key the log no longer has), file extents
 * (dropping what they overlap), xattrs (those of a logged inode the log lacks are deleted) and data
 * checksums are copied; then link counts and directory sizes are recounted for every inode touched. What the
 * readers then show is what a mount would show; the image is not written. Log items this does not replay
 * are counted and reported.
 */

/** A log holds what fsyncs wrote since the last commit; more than this is not a log worth trusting here. */
const MAX_LOG_ITEMS = 200_000;

export interface LogReplay {
  subvolumes: number;
  inodes: number;
  /** Kinds of logged items that were not replayed (one line each for the user). */
  skipped: string[];
}

const k = (objectid: bigint, type: number, offset: bigint): BtrfsKey => ({ objectid, type, offset });

/** Sets up `img.trees.overlay` with the replayed log; returns what was done. */
export async function replayTreeLog(img: ImageReader): Promise<LogReplay> {
  const sb = img.superblock;
  const overlay = new TreeOverlay();
  img.trees.overlay = overlay;
  // log blocks are written by the transaction after the committed one
  const logRoot: TreeRoot = { id: BTRFS_TREE_LOG_OBJECTID, bytenr: sb.log_root, level: sb.log_root_level, generation: sb.generation + 1n };
  const result: LogReplay = { subvolumes: 0, inodes: 0, skipped: [] };
  const logs: { root: bigint; tree: TreeRoot }[] = [];
  for await (const it of img.trees.iterate(logRoot, k(BTRFS_TREE_LOG_OBJECTID, BTRFS_ROOT_ITEM_KEY, 0n), k(BTRFS_TREE_LOG_OBJECTID, BTRFS_ROOT_ITEM_KEY, U64_MAX))) {
    const ri = decodeRootItem(it.data);
    logs.push({ root: it.key.offset, tree: { id: BTRFS_TREE_LOG_OBJECTID, bytenr: ri.bytenr, level: ri.level, generation: ri.generation } });
  }
  for (const log of logs) {
    const items: LeafItem[] = [];
    for await (const it of img.trees.iterate(log.tree, k(0n, 0, 0n), k(U64_MAX, 255, U64_MAX))) {
      items.push(it);
      if (items.length > MAX_LOG_ITEMS) throw new ImageError('IMAGE_BAD_LOG', `the tree log of subvolume ${log.root} holds more than ${MAX_LOG_ITEMS} items`);
    }
    await new SubvolReplay(img, overlay, log.root, items, result).run();
    result.subvolumes++;
  }
  return result;
}
