import {
  U64_MAX, BTRFS_COMPRESS_NONE, BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_FILE_EXTENT_REG, BTRFS_INODE_ITEM_KEY,
} from '../structs/constants.js';
import { type BtrfsKey, decodeFileExtentItem, decodeInodeItem, encodeFileExtentItem } from '../structs/fs-items.js';
import { hasNoHoles } from './features.js';
import type { FilesystemModel } from './model.js';

/**
 * Explicit hole extents for images without NO_HOLES. There, btrfs check (and the kernel, which writes
 * them on every truncate up, write past EOF and hole punch) expects a file's extent items to cover
 * [0, i_size) without gaps: a hole is a regular extent item with disk_bytenr 0. Rather than teach every
 * writer path (receive writes/truncates/clones/fallocate, mkfs --rootdir sparse files) to write them,
 * the paths that can open a gap note the inode here, and fillHoles() adds the missing hole items to
 * each noted file just before the commit. Nothing is noted on NO_HOLES images.
 */
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

/** Per filesystem: tree id → inodes whose extents or size changed since the last fill. */
const noted = new WeakMap<FilesystemModel, Map<bigint, Set<bigint>>>();

/** Remember that `ino`'s extents or size changed (a no-op on NO_HOLES images). */
export function noteFileChange(fs: FilesystemModel, root: bigint, ino: bigint): void {
  if (hasNoHoles(fs.sb)) return;
  let trees = noted.get(fs);
  if (!trees) noted.set(fs, (trees = new Map()));
  let inodes = trees.get(root);
  if (!inodes) trees.set(root, (inodes = new Set()));
  inodes.add(ino);
}

/** Give every noted regular file hole extents for the gaps between its extents below i_size. */
export function fillHoles(fs: FilesystemModel): void {
  const trees = noted.get(fs);
  if (!trees) return;
  noted.delete(fs);
  for (const [root, inodes] of trees) {
    if (!fs.hasTree(root)) continue; // the subvolume went away
    for (const ino of inodes) fillFileHoles(fs, root, ino);
  }
}

const extentKey = (ino: bigint, offset: bigint): BtrfsKey => ({ objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset });

function fillFileHoles(fs: FilesystemModel, root: bigint, ino: bigint): void {
  const t = fs.tree(root);
  const raw = t.get({ objectid: ino, type: BTRFS_INODE_ITEM_KEY, offset: 0n });
  if (!raw) return; // deleted since
  const inode = decodeInodeItem(raw);
  // symlinks are one inline extent; other types have no extents
  if ((inode.mode & S_IFMT) !== S_IFREG || inode.size === 0n) return;
  const ss = BigInt(fs.sectorsize);
  const end = roundUp(inode.size, ss);
  const gaps: Array<[bigint, bigint]> = [];
  let covered = 0n;
  for (const it of t.entries(extentKey(ino, 0n), extentKey(ino, U64_MAX))) {
    if (covered >= end) break;
    const start = it.key.offset;
    if (start > covered) gaps.push([covered, start < end ? start : end]);
    const fe = decodeFileExtentItem(it.data);
    // an inline extent counts up to the next sector, as btrfs check counts it
    const stop = start + (fe.type === BTRFS_FILE_EXTENT_INLINE ? roundUp(fe.ram_bytes, ss) : fe.num_bytes);
    if (stop > covered) covered = stop;
  }
  if (covered < end) gaps.push([covered, end]);
  for (const [s, e] of gaps) {
    t.put(extentKey(ino, s), encodeFileExtentItem({
      generation: fs.transid, ram_bytes: e - s, compression: BTRFS_COMPRESS_NONE, encryption: 0, other_encoding: 0,
      type: BTRFS_FILE_EXTENT_REG, disk_bytenr: 0n, disk_num_bytes: 0n, offset: 0n, num_bytes: e - s,
    }));
  }
}

function roundUp(v: bigint, a: bigint): bigint {
  return ((v + a - 1n) / a) * a;
}
