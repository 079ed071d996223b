/**
 * The abstract tree a manifest is computed from. A directory on a mounted filesystem is one source
 * (src/dirtree/source.ts); a subvolume read straight out of a btrfs image can be another, so that the tree the
 * kernel received and the tree btrfs-ts wrote can be compared line by line.
 */
export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'sock' | 'chr' | 'blk';

/** A timestamp as btrfs stores it: signed seconds plus 0..999999999 nanoseconds (floor semantics). */
export interface Timespec {
  sec: bigint;
  nsec: number;
}

export interface Xattr {
  name: Uint8Array;
  value: Uint8Array;
}

export interface TreeEntry {
  /** Raw path bytes relative to the tree root, `/`-separated, no leading slash; empty for the root itself. */
  path: Uint8Array;
  type: EntryType;
  /** Permission bits including suid/sgid/sticky (mode & 0o7777). */
  perm: number;
  uid: number;
  gid: number;
  /** Byte size for files and symlinks; ignored for the other types. */
  size: bigint;
  mtime: Timespec;
  atime: Timespec;
  nlink: number;
  /**
   * Inode identity used to find hard links: entries with the same key are one inode. Sources pick any
   * stable string (e.g. `dev:ino`); it never appears in the output, because inode numbers differ between
   * the kernel's receive and ours.
   */
  inodeKey: string;
  /** For chr/blk: the device number split the way the kernel's MAJOR()/MINOR() would. */
  rdev?: { major: number; minor: number };
  /** For symlinks: the raw target bytes. */
  symlinkTarget?: Uint8Array;
  xattrs: readonly Xattr[];
  /** For files: the content, in chunks, read lazily so memory stays bounded. */
  readContent(): AsyncIterable<Uint8Array>;
}

export interface TreeSource {
  /** Every entry of the tree once, root included, in any order. Content is not read during iteration. */
  entries(): AsyncIterable<TreeEntry>;
}

export interface ManifestOptions {
  /** Print atime (off by default: hashing file content on a read-write mount can itself bump atime). */
  atime?: boolean;
  /** Print nlink for every entry (off by default: directory link counts differ between filesystems). */
  nlink?: boolean;
  /** Leave out xattrs whose name starts with any of these prefixes (e.g. `security.selinux`). */
  skipXattrPrefixes?: readonly string[];
}
