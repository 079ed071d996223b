import { ImageError } from '../errors.js';
import type { ImageReader } from '../image/read/image.js';
import { readFile } from '../image/read/file-data.js';
import type { TreeRoot } from '../image/read/tree.js';
import { BTRFS_XATTR_ITEM_KEY, type BtrfsDirItem, type BtrfsInodeItem, decodeDirItems } from '../image/structs.js';
import * as C from '../stream/constants.js';
import type { KnownCommand } from '../stream/types.js';
import { btrfsNameHash } from '../util/crc32c.js';

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export const XATTR_NAME_CAPS = new TextEncoder().encode('security.capability');
const ACL_NAMES = ['system.posix_acl_access', 'system.posix_acl_default'].map((n) => new TextEncoder().encode(n));
/** posix_acl_xattr_header with no entries (POSIX_ACL_XATTR_VERSION 2): what the kernel sends for an empty ACL. */
const EMPTY_ACL = new Uint8Array([2, 0, 0, 0]);

const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** The kernel's new_encode_dev of its internal dev_t (MINORBITS 20), which btrfs stores as rdev. */
function newEncodeDev(rdev: bigint): bigint {
  const major = (rdev >> 20n) & 0xfffn;
  const minor = rdev & 0xfffffn;
  return (minor & 0xffn) | (major << 8n) | ((minor & ~0xffn) << 12n);
}

/** send_create_inode: the command making inode `ino` at `path` (its orphan name). */
export async function createCommand(img: ImageReader, root: bigint, ino: bigint, item: BtrfsInodeItem, path: Uint8Array): Promise<KnownCommand> {
  const mode = item.mode & S_IFMT;
  switch (mode) {
    case S_IFREG: return { cmd: C.BTRFS_SEND_C_MKFILE, path, ino };
    case S_IFDIR: return { cmd: C.BTRFS_SEND_C_MKDIR, path, ino };
    case S_IFLNK: {
      const parts: Uint8Array[] = [];
      for await (const p of readFile(img, { root, ino })) parts.push(p);
      return { cmd: C.BTRFS_SEND_C_SYMLINK, path, ino, pathLink: Buffer.concat(parts) };
    }
    case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK: {
      const cmd = mode === S_IFIFO ? C.BTRFS_SEND_C_MKFIFO : mode === S_IFSOCK ? C.BTRFS_SEND_C_MKSOCK : C.BTRFS_SEND_C_MKNOD;
      return { cmd, path, ino, rdev: newEncodeDev(item.rdev), mode: BigInt(item.mode) };
    }
    default:
      throw new ImageError('IMAGE_BAD_MODE', `inode ${ino} of subvolume ${root}: unknown mode 0${item.mode.toString(8)}`, { command: 'btrfs_inode_item' });
  }
}

/**
 * SET_XATTR for each xattr of one XATTR_ITEM (__process_new_xattr): security.capability is left for the
 * end of the inode (a CHOWN at the receiver clears it), an empty ACL is sent as an ACL header.
 */
export async function* xattrCommands(items: BtrfsDirItem[], path: () => Promise<Uint8Array>): AsyncGenerator<KnownCommand> {
  for (const d of items) {
    if (same(d.name, XATTR_NAME_CAPS)) continue;
    const data = d.data.length === 0 && ACL_NAMES.some((n) => same(n, d.name)) ? EMPTY_ACL : d.data;
    yield { cmd: C.BTRFS_SEND_C_SET_XATTR, path: await path(), name: d.name, data };
  }
}

/** send_capabilities: security.capability again after CHOWN/CHMOD, when the inode has one. */
export async function capabilityCommand(img: ImageReader, tree: TreeRoot, ino: bigint, path: Uint8Array): Promise<KnownCommand | undefined> {
  const it = await img.trees.lookup(tree, { objectid: ino, type: BTRFS_XATTR_ITEM_KEY, offset: BigInt(btrfsNameHash(XATTR_NAME_CAPS)) });
  const d = it && decodeDirItems(it.data).find((x) => same(x.name, XATTR_NAME_CAPS));
  return d && { cmd: C.BTRFS_SEND_C_SET_XATTR, path, name: XATTR_NAME_CAPS, data: d.data };
}

/** CHOWN and CHMOD (set-id bits are cleared by a CHOWN at the receiver: CHMOD comes after it). */
export function* ownerCommands(item: BtrfsInodeItem, path: Uint8Array, o: { chown: boolean; chmod: boolean }): Generator<KnownCommand> {
  if (o.chown) yield { cmd: C.BTRFS_SEND_C_CHOWN, path, uid: BigInt(item.uid), gid: BigInt(item.gid) };
  if (o.chmod) yield { cmd: C.BTRFS_SEND_C_CHMOD, path, mode: BigInt(item.mode & 0o7777) };
}
