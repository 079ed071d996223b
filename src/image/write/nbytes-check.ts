import { cannotModify } from '../../errors.js';
import { U64_MAX, BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE } from '../structs/constants.js';
import { type BtrfsInodeItem, decodeFileExtentItem } from '../structs/fs-items.js';
import type { FilesystemModel } from './model.js';

/**
 * A file's nbytes is kept by deltas (file-data.ts adds what an extent adds, subtracts what it drops), so
 * a file whose nbytes does not add up to its extents before the first change stays wrong after it, and
 * btrfs check rejects the result ("nbytes wrong"). As for directories (src/receive/size-checks.ts), such
 * a file is refused before its first change: the sum is taken as check takes it (inline extents count
 * ram_bytes, regular and preallocated extents num_bytes unless they are holes). A file made in this
 * transaction started at 0 and needs nothing; any other is read once per filesystem, its extents only.
 */
const checked = new WeakMap<FilesystemModel, Set<string>>();

/**
 * Called as nbytes is about to move by `delta` for an extent change already made in the tree (every
 * caller in file-data.ts changes the items first): the extents then add up to nbytes + delta exactly
 * when they added up to nbytes before.
 */
export function checkFileNbytes(fs: FilesystemModel, root: bigint, ino: bigint, inode: BtrfsInodeItem, delta: bigint): void {
  if (inode.generation >= fs.transid) return;
  let done = checked.get(fs);
  if (!done) checked.set(fs, (done = new Set()));
  const id = `${root}:${ino}`;
  if (done.has(id)) return;
  const sum = extentBytes(fs, root, ino);
  if (inode.nlink > 0 && sum - delta !== inode.nbytes) {
    throw cannotModify('IMAGE_BAD_INODE', `file inode ${ino} of subvolume ${root} has nbytes ${inode.nbytes}, its extents add up to ${sum - delta} (btrfs check would reject the result)`);
  }
  done.add(id);
}

/** What a file's extents add up to, as nbytes should say (btrfs check's sum). */
export function extentBytes(fs: FilesystemModel, root: bigint, ino: bigint): bigint {
  let sum = 0n;
  for (const it of fs.tree(root).entries({ objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: 0n }, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: U64_MAX })) {
    const fe = decodeFileExtentItem(it.data);
    if (fe.type === BTRFS_FILE_EXTENT_INLINE) sum += fe.ram_bytes;
    else if (fe.disk_bytenr !== 0n) sum += fe.num_bytes;
  }
  return sum;
}
