import { ImageError } from '../../errors.js';
import type { BtrfsInodeItem, BtrfsSuperBlock } from '../structs.js';
import { type ReadFileOptions, readFile } from './file-data.js';
import { ImageReader } from './image.js';
import {
  type DirEntry, type InodeLink, type Location, type Xattr, inodeLinks, listXattrs, lookupName, readDir,
  resolvePath, statInode,
} from './inodes.js';
import type { ImageSource } from './source.js';
import { type SubvolumeInfo, listSubvolumes, subvolumeByPath, topLevel } from './subvols.js';

export type { DirEntry, ImageSource, InodeLink, Location, ReadFileOptions, SubvolumeInfo, Xattr };
export { fromBlockDevice, fromBytes } from './source.js';
export { ImageReader } from './image.js';

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/**
 * Read-only view of a single-device btrfs image: subvolumes, paths, inodes, directories, xattrs, links
 * and file contents. Nothing is loaded up front beyond the superblock and chunk tree.
 */
export class BtrfsImage {
  private constructor(readonly reader: ImageReader) {}

  static async open(src: ImageSource): Promise<BtrfsImage> {
    return new BtrfsImage(await ImageReader.open(src));
  }

  get superblock(): BtrfsSuperBlock {
    return this.reader.superblock;
  }

  /** Root directory of the top-level subvolume (id 5). */
  root(): Promise<Location> {
    return topLevel(this.reader);
  }

  /** Resolves `path` (from the top level unless `from` is given) without following symlinks. */
  async resolve(path: string | Uint8Array, from?: Location): Promise<Location> {
    return resolvePath(this.reader, from ?? (await this.root()), path);
  }

  stat(loc: Location): Promise<BtrfsInodeItem> {
    return statInode(this.reader, loc);
  }

  readdir(dir: Location): AsyncGenerator<DirEntry> {
    return readDir(this.reader, dir);
  }

  lookup(dir: Location, name: Uint8Array): Promise<DirEntry | undefined> {
    return lookupName(this.reader, dir, name);
  }

  xattrs(loc: Location): Promise<Xattr[]> {
    return listXattrs(this.reader, loc);
  }

  links(loc: Location): Promise<InodeLink[]> {
    return inodeLinks(this.reader, loc);
  }

  /** File content in chunks of at most 1 MiB, data checksums verified. */
  readFile(loc: Location, opts?: ReadFileOptions): AsyncGenerator<Uint8Array> {
    return readFile(this.reader, loc, opts);
  }

  /** Symlink target bytes. */
  async readlink(loc: Location): Promise<Uint8Array> {
    const st = await this.stat(loc);
    if ((st.mode & S_IFMT) !== S_IFLNK) throw new ImageError('IMAGE_NOT_SYMLINK', `inode ${loc.ino} of subvolume ${loc.root} is not a symlink`);
    const parts: Uint8Array[] = [];
    for await (const c of this.readFile(loc)) parts.push(c);
    return Buffer.concat(parts);
  }

  listSubvolumes(): Promise<SubvolumeInfo[]> {
    return listSubvolumes(this.reader);
  }

  subvolumeByPath(path: string | Uint8Array): Promise<SubvolumeInfo> {
    return subvolumeByPath(this.reader, path);
  }
}
