import { cannotModify } from '../../errors.js';
import { MAX_KEY, MIN_KEY } from '../engine/path.js';
import type { ImageReader } from '../read/image.js';
import type { TreeOverlay } from '../read/overlay.js';
import {
  BTRFS_CSUM_TREE_OBJECTID, BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_INODE_ITEM_KEY, BTRFS_TREE_LOG_OBJECTID,
  BTRFS_ROOT_ITEM_KEY,
} from '../structs/constants.js';
import { decodeFileExtentItem, decodeInodeItem, encodeInodeItem } from '../structs/fs-items.js';
import { csumAlgo } from '../structs/csum.js';
import { decodeRootItem } from '../structs/tree-items.js';
import { addDataExtent, addDataRef, deleteCsums, dropDataRef, hasDataExtent, putDataCsums } from './extents.js';
import { deleteInode } from './file-data.js';
import type { Filesystem } from './filesystem.js';
import { isSubvolumeTree } from './model.js';
import { extentBytes } from './nbytes-check.js';

/**
 * Receive into an image with a tree log (copied while mounted, after an fsync): the log is replayed into
 * the subvolume trees as a mount replays it, and the next commit clears log_root. What the replay
 * changes is what the readers already show (src/image/read/log-replay.ts builds it as an overlay of
 * items, following the kernel's tree-log.c); this module turns that overlay into changes of the
 * writer's trees with their bookkeeping:
 * - file extents: a reference for each logged extent item (an extent the log's transaction allocated,
 *   absent from the extent tree, gets its extent item and its space taken, as btrfs_alloc_logged_file_extent
 *   does), the references of the items it replaces or deletes dropped;
 * - data checksums: the logged ones replace what the csum tree holds for their range;
 * - an inode left without a name (its last one unlinked by a logged directory) is deleted, as the
 *   kernel's orphan cleanup does after the replay.
 * Until that commit is on disk the superblock still points at the log: its blocks are kept from
 * allocation (the kernel pins them for the replay too), so a receive that fails leaves a log the kernel
 * can still replay. A log the reader could not replay whole (it names what) is refused.
 */
export interface PendingLog {
  overlay: TreeOverlay;
  /** Tree blocks of the log root tree and the log trees. */
  blocks: bigint[];
}


/** Reads what replaying the image's tree log takes (nothing when it has none); refuses what it cannot replay. */
export async function readTreeLog(img: ImageReader): Promise<PendingLog | undefined> {
  const sb = img.superblock;
  if (sb.log_root === 0n) return undefined;
  const replay = img.logReplay;
  const overlay = img.trees.overlay;
  if (!replay || !overlay) throw cannotModify('IMAGE_HAS_LOG', 'its tree log was not read');
  if (replay.skipped.length) {
    throw cannotModify('IMAGE_HAS_LOG', `its tree log holds what btrfs-ts does not replay (${replay.skipped.join(', ')}); mount it once with the kernel first`);
  }
  const blocks: bigint[] = [];
  const walk = async (bytenr: bigint, level: number, generation: bigint): Promise<void> => {
    const b = await img.trees.readBlock(bytenr, { level, generation, owner: BTRFS_TREE_LOG_OBJECTID });
    blocks.push(bytenr);
    for (const p of b.ptrs) await walk(p.blockptr, level - 1, p.generation);
  };
  // the log is written by the transaction after the committed one
  await walk(sb.log_root, sb.log_root_level, sb.generation + 1n);
  const rootTree = { id: BTRFS_TREE_LOG_OBJECTID, bytenr: sb.log_root, level: sb.log_root_level, generation: sb.generation + 1n };
  for await (const it of img.trees.iterate(rootTree, MIN_KEY, MAX_KEY)) {
    if (it.key.type !== BTRFS_ROOT_ITEM_KEY) continue;
    const ri = decodeRootItem(it.data);
    await walk(ri.bytenr, ri.level, ri.generation);
  }
  return { overlay, blocks };
}

/** Applies the replay to the opened filesystem's trees; the next commit makes it durable and clears log_root. */
export function applyTreeLog(fs: Filesystem, log: PendingLog): void {
  for (const b of log.blocks) fs.space.exclude(b, BigInt(fs.nodesize));
  const ov = log.overlay;
  const orphans: Array<[bigint, bigint]> = [];
  for (const root of ov.treeIds()) {
    if (root === BTRFS_CSUM_TREE_OBJECTID) continue;
    if (!isSubvolumeTree(root) || !fs.hasTree(root)) {
      throw cannotModify('IMAGE_HAS_LOG', `its tree log changes tree ${root}, which is not a subvolume of the image`);
    }
    const t = fs.tree(root);
    const entries = ov.range(root, MIN_KEY, MAX_KEY);
    const extents = entries.filter((e) => e.key.type === BTRFS_EXTENT_DATA_KEY);
    // references of the logged extent items first, then those of the items they replace: an extent both
    // keep never drops to zero references in between (which would free it)
    for (const e of extents) {
      const x = e.data && regularExtent(e.data);
      if (!x) continue;
      const owner = [root, e.key.objectid, BigInt.asUintN(64, e.key.offset - x.offset)] as const;
      if (hasDataExtent(fs, x.disk_bytenr)) addDataRef(fs, x.disk_bytenr, ...owner);
      else {
        fs.space.claim(x.disk_bytenr, x.disk_num_bytes);
        addDataExtent(fs, x.disk_bytenr, x.disk_num_bytes, ...owner);
      }
    }
    for (const e of extents) {
      const old = t.get(e.key);
      const x = old && regularExtent(old);
      if (x) dropDataRef(fs, x.disk_bytenr, root, e.key.objectid, BigInt.asUintN(64, e.key.offset - x.offset));
    }
    const files = new Set<bigint>();
    for (const e of entries) {
      if (e.data) t.put(e.key, e.data);
      else t.delete(e.key);
      if (e.key.type === BTRFS_INODE_ITEM_KEY || e.key.type === BTRFS_EXTENT_DATA_KEY) files.add(e.key.objectid);
    }
    // nbytes as the kernel's replay leaves it: the subvolume's, moved by each extent added and dropped,
    // which is what the extents add up to; the logged item's own count is not kept
    for (const ino of files) {
      const key = { objectid: ino, type: BTRFS_INODE_ITEM_KEY, offset: 0n };
      const data = t.get(key);
      if (!data) continue;
      const inode = decodeInodeItem(data);
      if ((inode.mode & 0o170000) === 0o040000) continue;
      if (inode.nlink === 0) orphans.push([root, ino]);
      const nbytes = extentBytes(fs, root, ino);
      if (nbytes !== inode.nbytes) t.put(key, encodeInodeItem({ ...inode, nbytes }));
    }
  }
  // the logged checksums of logged data replace what the csum tree holds for the same sectors
  for (const e of ov.range(BTRFS_CSUM_TREE_OBJECTID, MIN_KEY, MAX_KEY)) {
    if (!e.data) continue;
    const sectors = BigInt(e.data.length / csumAlgo(fs.sb.csum_type).size);
    deleteCsums(fs, e.key.offset, sectors * BigInt(fs.sectorsize));
    putDataCsums(fs, e.key.offset, e.data);
  }
  // an inode whose last name the replay removed: gone with its data, as the orphan cleanup leaves it
  for (const [root, ino] of orphans) deleteInode(fs, root, ino);
  fs.sb.log_root = 0n;
  fs.sb.log_root_level = 0;
}

function regularExtent(data: Uint8Array): { disk_bytenr: bigint; disk_num_bytes: bigint; offset: bigint } | undefined {
  if (data[20] === BTRFS_FILE_EXTENT_INLINE) return undefined;
  const x = decodeFileExtentItem(data);
  return x.disk_bytenr === 0n ? undefined : x;
}

