import { ImageError } from '../../errors.js';
import { btrfsNameHash } from '../../util/crc32c.js';
import {
  BTRFS_DIR_ITEM_KEY, BTRFS_FS_TREE_OBJECTID, BTRFS_ROOT_TREE_DIR_OBJECTID, type BtrfsInodeItem, type BtrfsSuperBlock,
  decodeDirItems,
} from '../structs.js';
import { type FileSegment, type ReadFileOptions, fileSegments, readFile } from './file-data.js';
import { ImageReader } from './image.js';
import {
  type DirEntry, type InodeLink, type Location, type Xattr, inodeLinks, listXattrs, lookupName, readDir,
  resolvePath, statInode,
} from './inodes.js';
import type { ImageSource } from './source.js';
import { type SubvolumeInfo, deletedSubvolumes, listSubvolumes, subvolumeByPath, topLevel } from './subvols.js';

export type { DirEntry, FileSegment, ImageSource, InodeLink, Location, ReadFileOptions, SubvolumeInfo, Xattr };
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

  /**
   * Opens an image. A tree log (the image was not unmounted after an fsync) is replayed in memory, as a
   * mount would; what the replay leaves out is said once through `warn` (default: stderr).
   */
  static async open(src: ImageSource, opts: { warn?: (msg: string) => void } = {}): Promise<BtrfsImage> {
    const reader = await ImageReader.open(src);
    const skipped = reader.logReplay?.skipped ?? [];
    if (skipped.length) {
      const warn = opts.warn ?? ((m: string) => process.stderr.write(`btrfs-ts: WARNING: ${m}\n`));
      warn(`the tree log was replayed in memory without: ${skipped.join(', ')}; a kernel mount may show more`);
    }
    return new BtrfsImage(reader);
  }

  get superblock(): BtrfsSuperBlock {
    return this.reader.superblock;
  }

  /** True when the image has a tree log (not yet replayed on disk); the readers show it replayed. */
  get hasLogTree(): boolean {
    return this.reader.superblock.log_root !== 0n;
  }

  /** Subvolume id a plain kernel mount shows (`btrfs subvolume set-default`); 5 unless changed. */
  async defaultSubvolume(): Promise<bigint> {
    const name = new TextEncoder().encode('default');
    const it = await this.reader.trees.lookup(this.reader.rootTree, { objectid: BTRFS_ROOT_TREE_DIR_OBJECTID, type: BTRFS_DIR_ITEM_KEY, offset: BigInt(btrfsNameHash(name)) });
    const d = it ? decodeDirItems(it.data).find((x) => Buffer.from(x.name).equals(Buffer.from(name))) : undefined;
    return d ? d.location.objectid : BTRFS_FS_TREE_OBJECTID;
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

  /** File content as data pieces and zero runs (holes, prealloc, the tail): for writers that keep holes. */
  fileSegments(loc: Location, opts?: ReadFileOptions): AsyncGenerator<FileSegment> {
    return fileSegments(this.reader, loc, opts);
  }

  /** Symlink target bytes. */
  async readlink(loc: Location): Promise<Uint8Array> {
    const st = await this.stat(loc);
    if ((st.mode & S_IFMT) !== S_IFLNK) throw new ImageError('IMAGE_NOT_SYMLINK', `inode ${loc.ino} of subvolume ${loc.root} is not a symlink`);
    // The kernel reads a symlink through one page: whatever a damaged i_size claims, at most 4096 bytes.
    const parts: Uint8Array[] = [];
    let n = 0;
    for await (const c of this.readFile(loc)) {
      parts.push(c);
      if ((n += c.length) >= 4096) break;
    }
    const target = Buffer.concat(parts).subarray(0, 4095);
    // The kernel's readlink copies the target as a C string: a NUL byte (a damaged item) ends it there.
    const nul = target.indexOf(0);
    return nul < 0 ? target : target.subarray(0, nul);
  }

  listSubvolumes(): Promise<SubvolumeInfo[]> {
    return listSubvolumes(this.reader);
  }

  /** Subvolumes deleted but not cleaned up yet (btrfs subvolume list -d): path "DELETED", parent 0. */
  deletedSubvolumes(): Promise<SubvolumeInfo[]> {
    return deletedSubvolumes(this.reader);
  }

  subvolumeByPath(path: string | Uint8Array): Promise<SubvolumeInfo> {
    return subvolumeByPath(this.reader, path);
  }
}
