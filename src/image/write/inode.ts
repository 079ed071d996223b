import { ImageError } from '../../errors.js';
import { sameBytes } from '../../util/bytes.js';
import { btrfsExtrefHash, btrfsNameHash } from '../../util/crc32c.js';
import {
  U64_MAX, BTRFS_DIR_INDEX_KEY, BTRFS_DIR_ITEM_KEY, BTRFS_FIRST_FREE_OBJECTID, BTRFS_FT_DIR, BTRFS_FT_UNKNOWN,
  BTRFS_FT_XATTR, BTRFS_INODE_EXTREF_KEY, btrfsFileType,
  BTRFS_INODE_ITEM_KEY, BTRFS_INODE_REF_KEY, BTRFS_LAST_FREE_OBJECTID, BTRFS_NAME_LEN, BTRFS_XATTR_ITEM_KEY,
} from '../structs/constants.js';
import {
  type BtrfsDirItem, type BtrfsInodeItem, type BtrfsKey, type BtrfsTimespec, decodeDirItems, decodeInodeExtrefs,
  decodeInodeRefs, encodeDirItems, encodeInodeExtrefs, encodeInodeRefs,
} from '../structs/fs-items.js';
import { maxItemSize } from './btree.js';
import { hasExtref } from './features.js';
import type { Filesystem } from './filesystem.js';
import { noteFileChange } from './holes.js';

/**
 * Inode-level operations on a subvolume tree: inodes, directory entries (DIR_ITEM + DIR_INDEX +
 * INODE_REF/EXTREF), xattrs. They keep the cross-item invariants btrfs check verifies (nlink = names,
 * dir i_size = 2 * sum of name lengths, per-directory increasing DIR_INDEX) but never touch timestamps:
 * the caller (mkfs from stat, the receiver from utimes) sets those explicitly with updateInode.
 */

/** btrfsFileType, refusing a mode that has none (the writer never links such an inode). */
export function fileTypeOfMode(mode: number): number {
  const t = btrfsFileType(mode);
  if (t === BTRFS_FT_UNKNOWN) throw new ImageError('IMAGE_BAD_MODE', `mode 0${mode.toString(8)} has no file type`);
  return t;
}

const inodeKey = (ino: bigint): BtrfsKey => ({ objectid: ino, type: BTRFS_INODE_ITEM_KEY, offset: 0n });

export interface NewInode {
  mode: number;
  uid?: number;
  gid?: number;
  rdev?: bigint;
  flags?: bigint;
  atime?: BtrfsTimespec;
  mtime?: BtrfsTimespec;
  ctime?: BtrfsTimespec;
  otime?: BtrfsTimespec;
}

/** Next unused objectid of a subvolume tree (highest in use + 1, at least 256). */
export function nextObjectid(fs: Filesystem, root: bigint): bigint {
  const last = fs.tree(root).lastKey({ objectid: BTRFS_LAST_FREE_OBJECTID, type: 255, offset: U64_MAX });
  const next = last && last.objectid >= BTRFS_FIRST_FREE_OBJECTID ? last.objectid + 1n : BTRFS_FIRST_FREE_OBJECTID;
  if (next > BTRFS_LAST_FREE_OBJECTID) throw new ImageError('IMAGE_NO_INODES', `tree ${root} has no free objectids`);
  return next;
}

/** Create an inode (nlink 0 until linked; a directory counts 1 once linked). Returns its number. */
export function createInode(fs: Filesystem, root: bigint, attrs: NewInode, ino?: bigint): bigint {
  const n = ino ?? nextObjectid(fs, root);
  const t = fs.tree(root);
  // a number past the highest objectid in use needs no look (nextObjectid)
  if (ino !== undefined && t.get(inodeKey(n))) throw new ImageError('IMAGE_INODE_EXISTS', `inode ${n} already exists in tree ${root}`);
  const zero: BtrfsTimespec = { sec: 0n, nsec: 0 };
  const item: BtrfsInodeItem = {
    generation: fs.transid, transid: fs.transid, size: 0n, nbytes: 0n, block_group: 0n, nlink: 0,
    uid: attrs.uid ?? 0, gid: attrs.gid ?? 0, mode: attrs.mode, rdev: attrs.rdev ?? 0n, flags: attrs.flags ?? 0n,
    sequence: 0n, atime: attrs.atime ?? zero, ctime: attrs.ctime ?? zero, mtime: attrs.mtime ?? zero,
    otime: attrs.otime ?? attrs.ctime ?? zero,
  };
  const type = fileTypeOfMode(attrs.mode);
  t.putInode(n, item);
  // past the highest objectid in use, nothing of the tree's names this directory yet
  if (ino === undefined && type === BTRFS_FT_DIR) t.madeDir(n);
  return n;
}

/** The inode's item as it is now (kept decoded; never change the object returned). */
export function getInode(fs: Filesystem, root: bigint, ino: bigint): BtrfsInodeItem | undefined {
  return fs.tree(root).inode(ino);
}

/**
 * Patch inode fields; transid is bumped to the running transaction like any kernel inode update. The
 * item reaches the tree later, once (delayed-inodes.ts).
 */
export function updateInode(fs: Filesystem, root: bigint, ino: bigint, patch: Partial<BtrfsInodeItem>): BtrfsInodeItem {
  const t = fs.tree(root);
  const cur = t.inode(ino);
  if (!cur) throw new ImageError('IMAGE_NO_INODE', `inode ${ino} does not exist in tree ${root}`);
  // a plain copy with the patch applied: an object spread of the 16 fields was most of this function's time
  const next: BtrfsInodeItem = {
    generation: cur.generation, transid: cur.transid, size: cur.size, nbytes: cur.nbytes, block_group: cur.block_group,
    nlink: cur.nlink, uid: cur.uid, gid: cur.gid, mode: cur.mode, rdev: cur.rdev, flags: cur.flags, sequence: cur.sequence,
    atime: cur.atime, ctime: cur.ctime, mtime: cur.mtime, otime: cur.otime,
  };
  Object.assign(next, patch);
  next.transid = patch.transid ?? fs.transid;
  t.setInode(ino, next);
  // a size or nbytes change may open a gap that needs a hole extent (images without NO_HOLES)
  if (patch.size !== undefined || patch.nbytes !== undefined) noteFileChange(fs, root, ino);
  return next;
}

export interface DirEntry {
  location: BtrfsKey;
  type: number;
  index: bigint;
}

/** The entry `name` of directory `dir`, if present. */
export function lookupDirEntry(fs: Filesystem, root: bigint, dir: bigint, name: Uint8Array): DirEntry | undefined {
  const d = findDirEntry(fs, root, dir, name);
  if (!d) return undefined;
  return { location: d.location, type: d.type, index: findIndex(fs, root, dir, name, d.location) };
}

/** The entry `name` of directory `dir` without its index (a lookup by name: one cached item). */
export function findDirEntry(fs: Filesystem, root: bigint, dir: bigint, name: Uint8Array): { location: BtrfsKey; type: number } | undefined {
  const items = fs.tree(root).dirItem(dir, BigInt(btrfsNameHash(name)));
  return items?.find((x) => sameBytes(x.name, name));
}

function findIndex(fs: Filesystem, root: bigint, dir: bigint, name: Uint8Array, loc: BtrfsKey): bigint {
  // the inode's back reference carries the index (for subvolume entries, scan the DIR_INDEX items)
  if (loc.type === BTRFS_INODE_ITEM_KEY) {
    const r = fs.tree(root).get({ objectid: loc.objectid, type: BTRFS_INODE_REF_KEY, offset: dir });
    const hit = r && decodeInodeRefs(r).find((x) => sameBytes(x.name, name));
    if (hit) return hit.index;
    const e = fs.tree(root).get({ objectid: loc.objectid, type: BTRFS_INODE_EXTREF_KEY, offset: extrefHash(dir, name) });
    const ehit = e && decodeInodeExtrefs(e).find((x) => x.parent_objectid === dir && sameBytes(x.name, name));
    if (ehit) return ehit.index;
  }
  for (const it of fs.tree(root).range({ objectid: dir, type: BTRFS_DIR_INDEX_KEY, offset: 0n }, { objectid: dir, type: BTRFS_DIR_INDEX_KEY, offset: U64_MAX })) {
    if (decodeDirItems(it.data).some((x) => sameBytes(x.name, name))) return it.key.offset;
  }
  throw new ImageError('IMAGE_BAD_DIR', `directory ${dir} entry has no DIR_INDEX`);
}

/** btrfs_extref_hash: crc32c seeded with the (truncated) parent objectid. */
export function extrefHash(parent: bigint, name: Uint8Array): bigint {
  return btrfsExtrefHash(parent, name);
}

/**
 * Add name `name` in directory `dir` pointing at `target` (an inode, or a subvolume's ROOT_ITEM key
 * for subvolume entries). Inode targets get their back reference and nlink; returns the DIR_INDEX.
 */
export function linkEntry(fs: Filesystem, root: bigint, dir: bigint, name: Uint8Array, target: BtrfsKey, type: number, index?: bigint): bigint {
  if (name.length === 0 || name.length > BTRFS_NAME_LEN) throw new ImageError('IMAGE_BAD_NAME', `name of ${name.length} bytes`);
  const t = fs.tree(root);
  const dirInode = getInode(fs, root, dir);
  if (!dirInode || fileTypeOfMode(dirInode.mode) !== BTRFS_FT_DIR) throw new ImageError('IMAGE_NOT_DIR', `inode ${dir} is not a directory`);
  const hashKey = { objectid: dir, type: BTRFS_DIR_ITEM_KEY, offset: BigInt(btrfsNameHash(name)) };
  const prev = t.dirItem(dir, hashKey.offset);
  if (prev?.some((x) => sameBytes(x.name, name))) throw new ImageError('IMAGE_EXISTS', `name already exists in directory ${dir}`);
  const idx = index ?? t.nextDirIndex(dir);
  const entry: BtrfsDirItem = { location: target, transid: fs.transid, type, name, data: new Uint8Array(0) };
  t.setDirItem(dir, hashKey.offset, [...(prev ?? []), entry]);
  t.put({ objectid: dir, type: BTRFS_DIR_INDEX_KEY, offset: idx }, encodeDirItems([entry]));
  updateInode(fs, root, dir, { size: dirInode.size + 2n * BigInt(name.length) });
  if (target.type === BTRFS_INODE_ITEM_KEY) {
    addInodeRef(fs, root, target.objectid, dir, name, idx);
    const ino = getInode(fs, root, target.objectid);
    if (!ino) throw new ImageError('IMAGE_NO_INODE', `inode ${target.objectid} does not exist in tree ${root}`);
    updateInode(fs, root, target.objectid, { nlink: ino.nlink + 1 });
  }
  return idx;
}

/** Link inode `ino` as `name` in `dir` (file type taken from its mode). */
export function linkInode(fs: Filesystem, root: bigint, dir: bigint, name: Uint8Array, ino: bigint, index?: bigint): bigint {
  const inode = getInode(fs, root, ino);
  if (!inode) throw new ImageError('IMAGE_NO_INODE', `inode ${ino} does not exist in tree ${root}`);
  return linkEntry(fs, root, dir, name, inodeKey(ino), fileTypeOfMode(inode.mode), index);
}

function addInodeRef(fs: Filesystem, root: bigint, ino: bigint, dir: bigint, name: Uint8Array, index: bigint): void {
  const t = fs.tree(root);
  const key = { objectid: ino, type: BTRFS_INODE_REF_KEY, offset: dir };
  const prev = t.get(key);
  const refs = [...(prev ? decodeInodeRefs(prev) : []), { index, name }];
  const bytes = encodeInodeRefs(refs);
  if (bytes.length <= maxItemSize(fs.nodesize)) {
    t.put(key, bytes);
    return;
  }
  // the INODE_REF item is full: this name goes to an extended ref, which only EXTENDED_IREF allows;
  // without it the kernel fails the link with EMLINK, and so does this (before anything is written)
  if (!hasExtref(fs.sb)) {
    throw new ImageError('IMAGE_TOO_MANY_LINKS', `Too many links: inode ${ino} has no room for another name in directory ${dir} (the image lacks the extref feature)`);
  }
  const ekey = { objectid: ino, type: BTRFS_INODE_EXTREF_KEY, offset: extrefHash(dir, name) };
  const eprev = t.get(ekey);
  t.put(ekey, encodeInodeExtrefs([...(eprev ? decodeInodeExtrefs(eprev) : []), { parent_objectid: dir, index, name }]));
}

/**
 * Remove entry `name` from `dir`: DIR_ITEM, DIR_INDEX, and for inode targets the back reference and one
 * nlink. The inode itself stays (with nlink possibly 0) — deleting it is the caller's decision.
 */
export function unlinkEntry(fs: Filesystem, root: bigint, dir: bigint, name: Uint8Array): DirEntry {
  const t = fs.tree(root);
  const e = lookupDirEntry(fs, root, dir, name);
  if (!e) throw new ImageError('IMAGE_NO_ENTRY', `no such entry in directory ${dir}`);
  const hashKey = { objectid: dir, type: BTRFS_DIR_ITEM_KEY, offset: BigInt(btrfsNameHash(name)) };
  t.setDirItem(dir, hashKey.offset, t.dirItem(dir, hashKey.offset)!.filter((x) => !sameBytes(x.name, name)));
  t.delete({ objectid: dir, type: BTRFS_DIR_INDEX_KEY, offset: e.index });
  const dirInode = getInode(fs, root, dir)!;
  updateInode(fs, root, dir, { size: dirInode.size - 2n * BigInt(name.length) });
  if (e.location.type === BTRFS_INODE_ITEM_KEY) {
    const ino = e.location.objectid;
    const rkey = { objectid: ino, type: BTRFS_INODE_REF_KEY, offset: dir };
    const refs = t.get(rkey);
    const kept = refs ? decodeInodeRefs(refs).filter((x) => !sameBytes(x.name, name)) : [];
    if (refs && kept.length < decodeInodeRefs(refs).length) {
      if (kept.length) t.put(rkey, encodeInodeRefs(kept));
      else t.delete(rkey);
    } else {
      const ekey = { objectid: ino, type: BTRFS_INODE_EXTREF_KEY, offset: extrefHash(dir, name) };
      const ek = t.get(ekey);
      const ekept = ek ? decodeInodeExtrefs(ek).filter((x) => !(x.parent_objectid === dir && sameBytes(x.name, name))) : [];
      if (ekept.length) t.put(ekey, encodeInodeExtrefs(ekept));
      else t.delete(ekey);
    }
    const inode = getInode(fs, root, ino)!;
    updateInode(fs, root, ino, { nlink: Math.max(0, inode.nlink - 1) });
  }
  return e;
}

// ---- xattrs ----

const xattrKey = (ino: bigint, name: Uint8Array): BtrfsKey => ({ objectid: ino, type: BTRFS_XATTR_ITEM_KEY, offset: BigInt(btrfsNameHash(name)) });

/** Set (create or replace) an xattr. Name + value must fit one item, as in the kernel. */
export function setXattr(fs: Filesystem, root: bigint, ino: bigint, name: Uint8Array, value: Uint8Array): void {
  const t = fs.tree(root);
  const key = xattrKey(ino, name);
  const prev = t.get(key);
  const others = prev ? decodeDirItems(prev).filter((x) => !sameBytes(x.name, name)) : [];
  const item: BtrfsDirItem = { location: { objectid: 0n, type: 0, offset: 0n }, transid: fs.transid, type: BTRFS_FT_XATTR, name, data: value };
  const bytes = encodeDirItems([...others, item]);
  if (bytes.length > maxItemSize(fs.nodesize)) throw new ImageError('IMAGE_XATTR_TOO_BIG', `xattr of ${name.length}+${value.length} bytes does not fit an item`);
  t.put(key, bytes);
}

/** The value of xattr `name` of inode `ino`, if set. */
export function getXattr(fs: Filesystem, root: bigint, ino: bigint, name: Uint8Array): Uint8Array | undefined {
  const prev = fs.tree(root).get(xattrKey(ino, name));
  return prev ? decodeDirItems(prev).find((x) => sameBytes(x.name, name))?.data : undefined;
}

export function removeXattr(fs: Filesystem, root: bigint, ino: bigint, name: Uint8Array): boolean {
  const t = fs.tree(root);
  const key = xattrKey(ino, name);
  const prev = t.get(key);
  if (!prev) return false;
  const all = decodeDirItems(prev);
  const others = all.filter((x) => !sameBytes(x.name, name));
  if (others.length === all.length) return false;
  if (others.length) t.put(key, encodeDirItems(others));
  else t.delete(key);
  return true;
}
