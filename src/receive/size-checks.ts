import { cannotModify } from '../errors.js';
import { U64_MAX, BTRFS_DIR_INDEX_KEY } from '../image/structs/constants.js';
import { decodeDirItems } from '../image/structs/fs-items.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { getInode } from '../image/write/inode.js';
import { escapePath } from '../dump/escape.js';
import { isDirMode } from './namespace.js';

/**
 * A receive changes directories it did not make: the one it creates subvolumes in (the top level or
 * `--dest`) and, in an incremental, the parent's directories its commands add names to or take names from.
 * Each change adds or subtracts 2 × the name's length from i_size, so a directory whose i_size does not add
 * up to its entries stays wrong afterwards: btrfs check rejects the result (the kernel's receive would
 * carry the error along too). Such a directory is refused before its first change, with nothing written
 * yet for it. A directory this transaction already changed (its transid) was checked then: each one is
 * read once, its entries only.
 */
export function checkDirBeforeChange(fs: Filesystem, root: bigint, ino: bigint, where: string | (() => string)): void {
  const inode = getInode(fs, root, ino);
  // `where` is made only for a message: a path escaped per command was a visible cost with many files
  if (inode && inode.transid >= fs.transid) return;
  // checked in an earlier transaction of this receive (several streams: one commit each), and kept
  // consistent by every change since — the top level of 2,000 subvolumes received at once was read 2,000
  // times. Remembered per tree engine: a tree replaced (a snapshot into it) is checked again.
  const engine = fs.trees.get(root)?.engine;
  let checked = engine && checkedDirs.get(engine);
  if (checked?.has(ino)) return;
  const what = `directory ${typeof where === 'string' ? where : where()} (inode ${ino} of subvolume ${root})`;
  if (!inode) throw cannotModify('IMAGE_BAD_INODE', `${what} has no inode item`);
  if (!isDirMode(inode.mode)) throw cannotModify('IMAGE_BAD_INODE', `${what} has mode 0${inode.mode.toString(8)}`);
  let size = 0n;
  for (const it of fs.tree(root).range({ objectid: ino, type: BTRFS_DIR_INDEX_KEY, offset: 0n }, { objectid: ino, type: BTRFS_DIR_INDEX_KEY, offset: U64_MAX })) {
    for (const d of decodeDirItems(it.data)) size += 2n * BigInt(d.name.length);
  }
  if (size !== inode.size) {
    throw cannotModify('IMAGE_BAD_INODE', `${what} has i_size ${inode.size}, its entries add up to ${size} (btrfs check would reject the result)`);
  }
  if (engine) {
    if (!checked) checkedDirs.set(engine, (checked = new Set()));
    checked.add(ino);
  }
}

/** Directories found consistent, by tree (the tree's engine: weakly, so a dropped tree takes its set along). */
const checkedDirs = new WeakMap<object, Set<bigint>>();

/** How a message names the directory holding the last component of a stream path (made when needed). */
export function parentOf(path: Uint8Array): () => string {
  return () => parentName(path);
}

function parentName(path: Uint8Array): string {
  const cut = path.lastIndexOf(0x2f);
  return cut <= 0 ? '"." (the subvolume root)' : JSON.stringify(escapePath(path.subarray(0, cut)));
}
