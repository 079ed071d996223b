import { ImageError } from '../../errors.js';
import { sameBytes } from '../../util/bytes.js';
import { btrfsNameHash } from '../../util/crc32c.js';
import {
  BTRFS_DIR_INDEX_KEY, BTRFS_DIR_ITEM_KEY, BTRFS_EMPTY_SUBVOL_DIR_OBJECTID, BTRFS_FT_DIR, BTRFS_INODE_EXTREF_KEY,
  BTRFS_INODE_ITEM_KEY, BTRFS_INODE_REF_KEY, BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_REF_KEY, BTRFS_XATTR_ITEM_KEY,
  type BtrfsDirItem, type BtrfsInodeItem, decodeDirItems, decodeInodeExtrefs, decodeInodeItem, decodeInodeRefs,
  decodeRootRef,
} from '../structs.js';
import type { ImageReader } from './image.js';
import { U64_MAX } from '../structs/constants.js';

/** An inode, named by the subvolume tree it lives in and its number there. */
export interface Location {
  root: bigint;
  ino: bigint;
  /**
   * A snapshot's entry for a subvolume nested in its source: the kernel shows an empty, read-only
   * directory there (inode 2) since the nested subvolume was not snapshotted with it.
   */
  emptySubvolDir?: boolean;
}

export interface DirEntry {
  name: Uint8Array;
  /** BTRFS_FT_* from the directory entry. */
  type: number;
  /** DIR_INDEX sequence number: readdir order. */
  index: bigint;
  location: Location;
  /** Set when the entry is a subvolume (its id); location is then that subvolume's root directory. */
  subvolume?: bigint;
}

export interface Xattr {
  name: Uint8Array;
  value: Uint8Array;
}

export interface InodeLink {
  parent: bigint;
  name: Uint8Array;
  index: bigint;
}

const showName = (n: Uint8Array): string => JSON.stringify(Buffer.from(n).toString('latin1'));

/** What the kernel reports for an emptySubvolDir placeholder (new_simple_dir): a 0755 root dir. */
function placeholderInode(): BtrfsInodeItem {
  const t = { sec: 0n, nsec: 0 };
  return {
    generation: 0n, transid: 0n, size: 0n, nbytes: 0n, block_group: 0n, nlink: 1, uid: 0, gid: 0, mode: 0o40755,
    rdev: 0n, flags: 0n, sequence: 0n, atime: t, ctime: t, mtime: t, otime: t,
  };
}

export async function statInode(img: ImageReader, loc: Location): Promise<BtrfsInodeItem> {
  if (loc.emptySubvolDir) return placeholderInode();
  const it = await img.trees.lookup(await img.tree(loc.root), { objectid: loc.ino, type: BTRFS_INODE_ITEM_KEY, offset: 0n });
  if (!it) throw new ImageError('IMAGE_NO_INODE', `inode ${loc.ino} not found in subvolume ${loc.root}`, { command: 'btrfs_inode_item' });
  return decodeInodeItem(it.data);
}

/** Turns a directory entry's location key into where it leads, crossing into subvolumes. */
async function entryLocation(img: ImageReader, dir: Location, d: BtrfsDirItem): Promise<{ location: Location; subvolume?: bigint }> {
  if (d.location.type === BTRFS_INODE_ITEM_KEY) return { location: { root: dir.root, ino: d.location.objectid } };
  if (d.location.type !== BTRFS_ROOT_ITEM_KEY) {
    throw new ImageError('IMAGE_BAD_DIR_ITEM', `entry ${showName(d.name)} in dir ${dir.ino} of subvolume ${dir.root} has location type ${d.location.type}`, { command: 'btrfs_dir_item' });
  }
  const sub = d.location.objectid;
  // The kernel only crosses when the ROOT_REF confirms this directory and name hold the subvolume.
  const ref = await img.trees.lookup(img.rootTree, { objectid: dir.root, type: BTRFS_ROOT_REF_KEY, offset: sub });
  const r = ref ? decodeRootRef(ref.data) : undefined;
  const root = await img.rootItem(sub);
  if (!r || r.dirid !== dir.ino || !sameBytes(r.name, d.name) || !root) {
    return { location: { root: dir.root, ino: BTRFS_EMPTY_SUBVOL_DIR_OBJECTID, emptySubvolDir: true }, subvolume: sub };
  }
  return { location: { root: sub, ino: root.item.root_dirid }, subvolume: sub };
}

/**
 * Directory entries in DIR_INDEX order (what readdir returns on a mounted fs), each leading where a
 * lookup of its name leads: the kernel's readdir lists every DIR_INDEX entry, but opening or stat'ing a
 * name goes through the DIR_ITEM name hash and takes the first entry of that name. So two entries with
 * one name (a damaged directory) both lead to that first entry, as they do on a mount.
 */
export async function* readDir(img: ImageReader, dir: Location): AsyncGenerator<DirEntry> {
  if (dir.emptySubvolDir) return;
  const tree = await img.tree(dir.root);
  const from = { objectid: dir.ino, type: BTRFS_DIR_INDEX_KEY, offset: 0n };
  const to = { objectid: dir.ino, type: BTRFS_DIR_INDEX_KEY, offset: U64_MAX };
  for await (const it of img.trees.iterate(tree, from, to)) {
    for (const d of decodeDirItems(it.data)) {
      const named = (await dirItemNamed(img, dir, d.name)) ?? d;
      const { location, subvolume } = await entryLocation(img, dir, named);
      yield { name: d.name, type: named.type, index: it.key.offset, location, ...(subvolume !== undefined ? { subvolume } : {}) };
    }
  }
}

/** The first entry called `name` in the directory's DIR_ITEM for that name's hash: what a lookup finds. */
async function dirItemNamed(img: ImageReader, dir: Location, name: Uint8Array): Promise<BtrfsDirItem | undefined> {
  const tree = await img.tree(dir.root);
  const it = await img.trees.lookup(tree, { objectid: dir.ino, type: BTRFS_DIR_ITEM_KEY, offset: BigInt(btrfsNameHash(name)) });
  return it ? decodeDirItems(it.data).find((d) => sameBytes(d.name, name)) : undefined;
}

/** One name in a directory, via the DIR_ITEM name hash. */
export async function lookupName(img: ImageReader, dir: Location, name: Uint8Array): Promise<DirEntry | undefined> {
  if (dir.emptySubvolDir) return undefined;
  const d = await dirItemNamed(img, dir, name);
  if (!d) return undefined;
  const { location, subvolume } = await entryLocation(img, dir, d);
  return { name: d.name, type: d.type, index: 0n, location, ...(subvolume !== undefined ? { subvolume } : {}) };
}

export function splitPath(path: string | Uint8Array): Uint8Array[] {
  const bytes = typeof path === 'string' ? new TextEncoder().encode(path) : path;
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x2f) {
      if (i > start) parts.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}

/**
 * Resolves a path from `start` without following symlinks (a symlink as the last component is returned
 * itself; one in the middle is an error). `.` is skipped, `..` is refused: images are read, not chrooted.
 */
export async function resolvePath(img: ImageReader, start: Location, path: string | Uint8Array): Promise<Location> {
  let loc = start;
  let walked = '';
  for (const part of splitPath(path)) {
    const name = Buffer.from(part).toString('latin1');
    if (name === '.') continue;
    if (name === '..') throw new ImageError('IMAGE_BAD_PATH', `'..' is not supported in image paths`, { path: String(path) });
    const st = await statInode(img, loc);
    if ((st.mode & 0o170000) !== 0o040000) {
      throw new ImageError('IMAGE_NOT_DIR', `${walked || '/'} is not a directory`, { path: String(path) });
    }
    const e = await lookupName(img, loc, part);
    if (!e) throw new ImageError('IMAGE_NO_ENTRY', `no such file or directory: ${walked}/${name}`, { path: String(path) });
    loc = e.location;
    walked += `/${name}`;
  }
  return loc;
}

export async function listXattrs(img: ImageReader, loc: Location): Promise<Xattr[]> {
  if (loc.emptySubvolDir) return [];
  const tree = await img.tree(loc.root);
  const out: Xattr[] = [];
  const from = { objectid: loc.ino, type: BTRFS_XATTR_ITEM_KEY, offset: 0n };
  const to = { objectid: loc.ino, type: BTRFS_XATTR_ITEM_KEY, offset: U64_MAX };
  for await (const it of img.trees.iterate(tree, from, to)) {
    for (const d of decodeDirItems(it.data)) out.push({ name: d.name, value: d.data });
  }
  return out;
}

/** Every (parent, name) of an inode, from INODE_REF and INODE_EXTREF items: its hard links. */
export async function inodeLinks(img: ImageReader, loc: Location): Promise<InodeLink[]> {
  if (loc.emptySubvolDir) return [];
  const tree = await img.tree(loc.root);
  const out: InodeLink[] = [];
  const from = { objectid: loc.ino, type: BTRFS_INODE_REF_KEY, offset: 0n };
  const to = { objectid: loc.ino, type: BTRFS_INODE_EXTREF_KEY, offset: U64_MAX };
  for await (const it of await img.trees.shortRange(tree, from, to)) {
    if (it.key.type === BTRFS_INODE_REF_KEY) {
      for (const r of decodeInodeRefs(it.data)) out.push({ parent: it.key.offset, name: r.name, index: r.index });
    } else {
      for (const r of decodeInodeExtrefs(it.data)) out.push({ parent: r.parent_objectid, name: r.name, index: r.index });
    }
  }
  return out;
}

export function isDirType(t: number): boolean {
  return t === BTRFS_FT_DIR;
}
