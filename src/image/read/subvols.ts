import { joinPath, sameBytes } from '../../util/bytes.js';
import { ImageError } from '../../errors.js';
import {
  BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID, BTRFS_INODE_REF_KEY, BTRFS_LAST_FREE_OBJECTID,
  BTRFS_ROOT_BACKREF_KEY, BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_SUBVOL_RDONLY, type BtrfsRootItem, type BtrfsTimespec,
  decodeInodeRefs, decodeRootItem, decodeRootRef,
} from '../structs.js';
import type { ImageReader } from './image.js';
import { type Location, lookupName, splitPath } from './inodes.js';
import { U64_MAX } from '../structs/constants.js';

export interface SubvolumeInfo {
  id: bigint;
  /** Subvolume containing it ("top level" in `btrfs subvolume list`); 0 for the top level itself. */
  parent: bigint;
  /** Directory inode (in `parent`) holding it. */
  dirid: bigint;
  name: Uint8Array;
  /** Path from the top-level subvolume, '/'-joined raw bytes decoded as UTF-8 for display. */
  path: string;
  pathBytes: Uint8Array;
  uuid: Uint8Array;
  parentUuid: Uint8Array;
  receivedUuid: Uint8Array;
  generation: bigint;
  otransid: bigint;
  ctransid: bigint;
  stransid: bigint;
  rtransid: bigint;
  otime: BtrfsTimespec;
  ctime: BtrfsTimespec;
  flags: bigint;
  readonly: boolean;
  /** Made as a snapshot: its ROOT_ITEM is keyed with the transid of its creation (btrfs subvolume list -s). */
  snapshot: boolean;
  /** Its ROOT_ITEM's key offset (0, or for a snapshot the generation its own blocks are newer than). */
  keyOffset: bigint;
  rootDirid: bigint;
  item: BtrfsRootItem;
}

const utf8 = new TextDecoder();

/**
 * A received snapshot as an earlier btrfs-ts keyed it: its ROOT_ITEM keyed with the transaction that made
 * and changed it, which its otransid and rtransid both are — what no kernel receive leaves (it receives
 * into the snapshot after the commit that made it). The kernel's delete of such a subvolume damages the
 * filesystem (write/subvol.ts snapshotKeyOffset says why); btrfs-ts's writer rekeys them on open.
 */
export function staleSnapshotKey(id: bigint, keyOffset: bigint, item: Pick<BtrfsRootItem, 'otransid' | 'rtransid' | 'received_uuid'>): boolean {
  if (keyOffset === 0n || id < BTRFS_FIRST_FREE_OBJECTID || id > BTRFS_LAST_FREE_OBJECTID) return false;
  return keyOffset === item.otransid && item.rtransid === item.otransid && item.received_uuid.some((b) => b !== 0);
}

/** Path of directory `ino` inside subvolume `root`, following the first INODE_REF of each level. */
async function dirPath(img: ImageReader, root: bigint, ino: bigint, rootDirid: bigint, known: Map<string, Uint8Array[]>): Promise<Uint8Array[]> {
  // subvolumes kept side by side (a directory of daily snapshots) share their directory's path
  const key = `${root}:${ino}`;
  const hit = known.get(key);
  if (hit) return hit;
  const parts: Uint8Array[] = [];
  const tree = await img.tree(root);
  const seen = new Set<bigint>();
  while (ino !== rootDirid) {
    if (seen.has(ino)) throw new ImageError('IMAGE_BAD_INODE_REF', `directory loop at inode ${ino} in subvolume ${root}`);
    seen.add(ino);
    const from = { objectid: ino, type: BTRFS_INODE_REF_KEY, offset: 0n };
    const to = { objectid: ino, type: BTRFS_INODE_REF_KEY, offset: U64_MAX };
    let next: bigint | undefined;
    for await (const it of img.trees.iterate(tree, from, to)) {
      const ref = decodeInodeRefs(it.data)[0];
      if (ref) {
        parts.unshift(ref.name);
        next = it.key.offset;
        break;
      }
    }
    if (next === undefined) throw new ImageError('IMAGE_BAD_INODE_REF', `directory ${ino} in subvolume ${root} has no INODE_REF`);
    ino = next;
  }
  known.set(key, parts);
  return parts;
}

function info(id: bigint, item: BtrfsRootItem, parent: bigint, dirid: bigint, name: Uint8Array, pathBytes: Uint8Array, keyOffset = 0n): SubvolumeInfo {
  return {
    snapshot: keyOffset !== 0n, keyOffset,
    id, parent, dirid, name, path: utf8.decode(pathBytes), pathBytes, uuid: item.uuid, parentUuid: item.parent_uuid,
    receivedUuid: item.received_uuid, generation: item.generation, otransid: item.otransid, ctransid: item.ctransid,
    stransid: item.stransid, rtransid: item.rtransid, otime: item.otime, ctime: item.ctime, flags: item.flags,
    readonly: (item.flags & BTRFS_ROOT_SUBVOL_RDONLY) !== 0n, rootDirid: item.root_dirid, item,
  };
}

/**
 * Every subvolume reachable from the top level (id 5 first, then by id), with its full path. Subvolumes
 * without a ROOT_BACKREF (deleted, awaiting cleanup) are left out, as `btrfs subvolume list` does.
 */
export async function listSubvolumes(img: ImageReader): Promise<SubvolumeInfo[]> {
  return (await scanSubvolumes(img)).listed;
}

/**
 * The subvolumes deleted but not yet cleaned up (a ROOT_ITEM whose subvolume no path reaches: no
 * ROOT_BACKREF, or one to a subvolume that is gone), as `btrfs subvolume list -d` shows them: path
 * "DELETED", parent 0.
 */
export async function deletedSubvolumes(img: ImageReader): Promise<SubvolumeInfo[]> {
  return (await scanSubvolumes(img)).deleted;
}

async function scanSubvolumes(img: ImageReader): Promise<{ listed: SubvolumeInfo[]; deleted: SubvolumeInfo[] }> {
  const items = new Map<bigint, BtrfsRootItem>();
  const offsets = new Map<bigint, bigint>();
  const backrefs = new Map<bigint, { parent: bigint; dirid: bigint; name: Uint8Array }>();
  const from = { objectid: BTRFS_FIRST_FREE_OBJECTID, type: 0, offset: 0n };
  const to = { objectid: BTRFS_LAST_FREE_OBJECTID, type: 255, offset: U64_MAX };
  for await (const it of img.trees.iterate(img.rootTree, from, to)) {
    if (it.key.type === BTRFS_ROOT_ITEM_KEY) {
      items.set(it.key.objectid, decodeRootItem(it.data));
      offsets.set(it.key.objectid, it.key.offset);
    }
    else if (it.key.type === BTRFS_ROOT_BACKREF_KEY && !backrefs.has(it.key.objectid)) {
      const r = decodeRootRef(it.data);
      backrefs.set(it.key.objectid, { parent: it.key.offset, dirid: r.dirid, name: r.name });
    }
  }
  const top = await img.rootItem(BTRFS_FS_TREE_OBJECTID);
  if (!top) throw new ImageError('IMAGE_NO_TREE', 'the top-level subvolume (tree 5) has no ROOT_ITEM');
  const paths = new Map<bigint, Uint8Array[]>([[BTRFS_FS_TREE_OBJECTID, []]]);
  const dirPaths = new Map<string, Uint8Array[]>();
  const pathOf = async (id: bigint, depth: number): Promise<Uint8Array[] | undefined> => {
    const known = paths.get(id);
    if (known) return known;
    const br = backrefs.get(id);
    if (!br || depth > 4096) return undefined;
    const parentPath = await pathOf(br.parent, depth + 1);
    const parentItem = br.parent === BTRFS_FS_TREE_OBJECTID ? top.item : items.get(br.parent);
    if (!parentPath || !parentItem) return undefined;
    const p = [...parentPath, ...(await dirPath(img, br.parent, br.dirid, parentItem.root_dirid, dirPaths)), br.name];
    paths.set(id, p);
    return p;
  };
  const out: SubvolumeInfo[] = [info(BTRFS_FS_TREE_OBJECTID, top.item, 0n, 0n, new Uint8Array(0), new Uint8Array(0))];
  const deleted: SubvolumeInfo[] = [];
  const DELETED = new TextEncoder().encode('DELETED');
  for (const [id, item] of [...items].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const p = await pathOf(id, 0);
    const br = backrefs.get(id);
    if (!p || !br) deleted.push(info(id, item, 0n, 0n, new Uint8Array(0), DELETED, offsets.get(id)));
    else out.push(info(id, item, br.parent, br.dirid, br.name, joinPath(p), offsets.get(id)));
  }
  return { listed: out, deleted };
}

const isDots = (p: Uint8Array): boolean => p[0] === 0x2e && (p.length === 1 || (p.length === 2 && p[1] === 0x2e));

/**
 * The subvolume whose root directory `path` (from the top level) names; '' or '/' is the top level. Found
 * by looking its names up one directory after the other, as the kernel resolves a path: a send or receive
 * on an image of a thousand daily snapshots reads a few blocks for it, not every subvolume's items (which
 * listSubvolumes does; the answer is the same — the entry must lead to a subvolume whose ROOT_REF and
 * ROOT_BACKREF name that directory and name).
 */
export async function subvolumeByPath(img: ImageReader, path: string | Uint8Array): Promise<SubvolumeInfo> {
  // '.' and '..' taken as a shell takes them in a path from the top ('./day1', 'snaps/../data'; '..' of the
  // top level is the top level): what `btrfs send ./day1` in the mount names
  const want: Uint8Array[] = [];
  for (const part of splitPath(path)) {
    if (!isDots(part)) want.push(part);
    else if (part.length === 2) want.pop();
  }
  const missing = (): ImageError => new ImageError('IMAGE_NO_SUBVOLUME', `no subvolume at path ${JSON.stringify(String(path))}`, { path: String(path) });
  const top = await img.rootItem(BTRFS_FS_TREE_OBJECTID);
  if (!top) throw new ImageError('IMAGE_NO_TREE', 'the top-level subvolume (tree 5) has no ROOT_ITEM');
  if (want.length === 0) return info(BTRFS_FS_TREE_OBJECTID, top.item, 0n, 0n, new Uint8Array(0), new Uint8Array(0));
  let dir: Location = { root: BTRFS_FS_TREE_OBJECTID, ino: top.item.root_dirid };
  let parent = BTRFS_FS_TREE_OBJECTID;
  let sub: bigint | undefined;
  for (const part of want) {
    const e = await lookupName(img, dir, part);
    if (!e || e.location.emptySubvolDir) throw missing();
    parent = dir.root;
    sub = e.subvolume;
    dir = e.location;
  }
  if (sub === undefined) throw missing();
  const root = await img.rootItem(sub);
  const backref = await img.trees.lookup(img.rootTree, { objectid: sub, type: BTRFS_ROOT_BACKREF_KEY, offset: parent });
  const br = backref && decodeRootRef(backref.data);
  if (!root || !br || !sameBytes(br.name, want[want.length - 1]!)) throw missing();
  return info(sub, root.item, parent, br.dirid, br.name, joinPath(want), root.key.offset);
}

/** Root directory of the top-level subvolume: where image paths start. */
export async function topLevel(img: ImageReader): Promise<Location> {
  const top = await img.rootItem(BTRFS_FS_TREE_OBJECTID);
  if (!top) throw new ImageError('IMAGE_NO_TREE', 'the top-level subvolume (tree 5) has no ROOT_ITEM');
  return { root: BTRFS_FS_TREE_OBJECTID, ino: top.item.root_dirid };
}

