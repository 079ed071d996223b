import { BTRFS_MAX_EXTENT_SIZE, writePreallocExtent } from '../image/write/file-data.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { getInode, updateInode } from '../image/write/inode.js';
import { BTRFS_INODE_PREALLOC } from '../image/structs/constants.js';
import { extentsIn } from './file-read.js';
import { alignUp, type FileWriter } from './file-write.js';

/**
 * FALLOCATE without PUNCH_HOLE: reserve space over the holes of [offset, offset+len) with preallocated
 * extents (they read as zeros and keep their space), and extend i_size unless KEEP_SIZE.
 */
export function fallocate(fs: Filesystem, writer: FileWriter, root: bigint, ino: bigint, offset: bigint, len: bigint, keepSize: boolean): void {
  const ss = BigInt(fs.sectorsize);
  const isize = getInode(fs, root, ino)!.size;
  if (offset > isize) writer.zeroEofTail(root, ino, isize, offset);
  const start = offset - (offset % ss);
  const end = alignUp(offset + len, ss);
  let pos = start;
  const fill = (to: bigint) => {
    // one preallocated extent covers at most BTRFS_MAX_EXTENT_SIZE (128 MiB), like any data extent
    while (to > pos) {
      const n = to - pos > BTRFS_MAX_EXTENT_SIZE ? BTRFS_MAX_EXTENT_SIZE : to - pos;
      writePreallocExtent(fs, root, ino, pos, n);
      pos += n;
    }
  };
  for (const x of extentsIn(fs, root, ino, start, end)) {
    if (x.fileOffset > pos) fill(x.fileOffset);
    const xe = alignUp(x.fileOffset + x.len, ss);
    if (xe > pos) pos = xe;
  }
  fill(end);
  const inode = getInode(fs, root, ino)!;
  const patch: { size?: bigint; flags?: bigint } = { flags: inode.flags | BTRFS_INODE_PREALLOC };
  if (!keepSize && offset + len > inode.size) patch.size = offset + len;
  updateInode(fs, root, ino, patch);
}
