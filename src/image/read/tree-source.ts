import { ImageError } from '../../errors.js';
import type { EntryType, TreeEntry, TreeSource } from '../../manifest/types.js';
import { BtrfsImage, type Location } from './index.js';

/**
 * A subtree of an image as a manifest TreeSource, so what the reader sees can be compared line by line
 * with a kernel mount of the same image (dirTreeSource). Crosses into subvolumes as a mount does.
 */

const TYPES: Record<number, EntryType> = {
  0o100000: 'file', 0o040000: 'dir', 0o120000: 'symlink', 0o010000: 'fifo', 0o140000: 'sock', 0o020000: 'chr', 0o060000: 'blk',
};

/** btrfs stores the kernel's internal dev_t (MINORBITS = 20), not the user-space encoding. */
export function splitKernelDev(rdev: bigint): { major: number; minor: number } {
  return { major: Number((rdev >> 20n) & 0xfffn), minor: Number(rdev & 0xfffffn) };
}

/**
 * Zeros a manifest hashes per file at most: sha256 cannot skip them, so a file sparse beyond this is
 * reported instead of hashed for minutes or years. At least 4 GiB, more on a larger filesystem.
 */
export function hashableZeros(img: BtrfsImage): bigint {
  const fsSize = img.superblock.total_bytes;
  return fsSize > 4n << 30n ? fsSize : 4n << 30n;
}

export function imageTreeSource(img: BtrfsImage, start: Location): TreeSource {
  const maxZeros = hashableZeros(img);
  return {
    async *entries(): AsyncGenerator<TreeEntry> {
      const stack: { loc: Location; path: Uint8Array }[] = [{ loc: start, path: new Uint8Array(0) }];
      // Directories cannot be hard-linked: meeting one twice means a corrupt entry made a cycle.
      const dirsSeen = new Set<string>();
      while (stack.length > 0) {
        const { loc, path } = stack.pop()!;
        const st = await img.stat(loc);
        const type = TYPES[st.mode & 0o170000];
        if (!type) throw new ImageError('IMAGE_BAD_MODE', `inode ${loc.ino} of subvolume ${loc.root}: unknown mode 0${st.mode.toString(8)}`, { command: 'btrfs_inode_item' });
        const e: TreeEntry = {
          path, type, perm: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size, mtime: st.mtime, atime: st.atime,
          nlink: st.nlink, inodeKey: `${loc.root}:${loc.ino}${loc.emptySubvolDir ? ':empty' : ''}`, xattrs: await img.xattrs(loc),
          readContent: () => img.readFile(loc, { maxZeros }),
        };
        if (type === 'chr' || type === 'blk') e.rdev = splitKernelDev(st.rdev);
        if (type === 'symlink') e.symlinkTarget = await img.readlink(loc);
        yield e;
        if (type === 'dir') {
          // placeholders (emptySubvolDir) share inode 2 but are empty, so they cannot loop
          const k = `${loc.root}:${loc.ino}`;
          if (!loc.emptySubvolDir && dirsSeen.has(k)) throw new ImageError('IMAGE_DIR_CYCLE', `directory inode ${loc.ino} of subvolume ${loc.root} is reached twice (at ${Buffer.from(path).toString('latin1')})`);
          dirsSeen.add(k);
          for await (const d of img.readdir(loc)) {
            const p = path.length ? Buffer.concat([path, Buffer.from('/'), d.name]) : Buffer.from(d.name);
            stack.push({ loc: d.location, path: new Uint8Array(p) });
          }
        }
      }
    },
  };
}
