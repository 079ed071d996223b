import { ImageError } from '../errors.js';
import { BtrfsImage, type SubvolumeInfo } from '../image/read/index.js';
import {
  BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID, BTRFS_LAST_FREE_OBJECTID, BTRFS_NAME_LEN, BTRFS_ROOT_SUBVOL_RDONLY,
} from '../image/structs/constants.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { findDirEntry } from '../image/write/inode.js';
import { getRootItem, setDefaultSubvolume as setDefaultEntry } from '../image/write/subvol.js';
import { type ModelPlace, isModelDir, lookupModelPath, makeSnapshot, makeSubvolume, setReadonlyProperty } from '../image/write/subvol-snapshot.js';
import { withImageFile } from '../io/image-read-file.js';
import { changeImage } from '../receive/image-file.js';
import { readCommitted } from './committed-image.js';

/**
 * `btrfs subvolume snapshot`, `subvolume create`, `subvolume get-default` / `set-default` and `btrfs property
 * get/set ro` on an image file, without a mount. Paths are inside the image, from the top level, as `ls`
 * takes them. Each change is checked whole before anything is written and committed at once; a refusal or
 * a failure leaves the image byte for byte as it was (changeImage). An image with a tree log is refused
 * (readCommitted), as the other commands that change an image refuse it. Refusals say what btrfs-progs 6.2
 * and the kernel say, with the errno's text.
 */

const enc = new TextEncoder();

/** POSIX basename(3), as btrfs-progs splits its destination argument. */
export function posixBasename(p: string): string {
  if (p === '') return '.';
  const t = p.replace(/\/+$/, '');
  if (t === '') return '/';
  return t.slice(t.lastIndexOf('/') + 1);
}

/** POSIX dirname(3). */
export function posixDirname(p: string): string {
  const t = p.replace(/\/+$/, '');
  if (t === '') return p === '' ? '.' : '/';
  const i = t.lastIndexOf('/');
  if (i < 0) return '.';
  const d = t.slice(0, i).replace(/\/+$/, '');
  return d === '' ? '/' : d;
}

/** btrfs-progs' test_issubvolname: not empty, no '/', not '.' or '..'. */
const isSubvolName = (n: string): boolean => n.length > 0 && !n.includes('/') && n !== '.' && n !== '..';

const readOnly = (fs: Filesystem, root: bigint): boolean => (getRootItem(fs, root).flags & BTRFS_ROOT_SUBVOL_RDONLY) !== 0n;

/** The directory `dir` names, to take a new entry; refused as btrfs_open_dir and the kernel refuse it. */
function targetDir(fs: Filesystem, dir: string, refuse: (code: string, why: string) => never): ModelPlace {
  const at = probe(fs, dir);
  if (!at) refuse('SUBVOL_NO_DIR', `cannot access '${dir}': No such file or directory`);
  if (!isModelDir(fs, at!)) refuse('SUBVOL_NOT_DIR', `'${dir}' is not a directory`);
  if (at!.placeholder) refuse('SUBVOL_PLACEHOLDER', `'${dir}' is the empty directory a snapshot holds for a subvolume not snapshotted with it: Operation not permitted`);
  return at!;
}

/** What `path` names, undefined if it or a directory on the way is missing (as stat's ENOENT). */
function probe(fs: Filesystem, path: string): ModelPlace | undefined {
  try {
    return lookupModelPath(fs, path);
  } catch (e) {
    if (e instanceof ImageError && e.code === 'IMAGE_NO_ENTRY') return undefined;
    throw e;
  }
}

/** A tree log waits for a kernel mount: refused (the writer's open would replay it). */
async function refuseLog(real: string, image: string): Promise<void> {
  await readCommitted(real, image, async () => undefined);
}

export interface SnapshotResult {
  id: bigint;
  /** As btrfs-progs prints it: `Create a snapshot of 'SOURCE' in 'DIR/NAME'`. */
  source: string;
  dest: string;
  readonly: boolean;
}

/**
 * `btrfs subvolume snapshot [-r] SOURCE DEST` on an image: SOURCE a subvolume (the top level '/' too), DEST
 * a new path, or an existing directory to hold a snapshot named after SOURCE's last component
 * (image/write/subvol-snapshot.ts makeSnapshot: the kernel's create_pending_snapshot). Refused: SOURCE not
 * a subvolume, DEST existing and not a directory, an invalid or too long name, the name taken (File
 * exists), the directory in a read-only subvolume (Read-only file system).
 */
export async function snapshotSubvolume(image: string, source: string, dest: string, opts: { readonly?: boolean } = {}): Promise<SnapshotResult> {
  return changeImage(image, async (real, fs) => {
    await refuseLog(real, image);
    const refuse = (code: string, why: string): never => {
      throw new ImageError(code, why);
    };
    const src = probe(fs, source);
    if (!src) refuse('SUBVOL_NO_SOURCE', `cannot access '${source}': No such file or directory`);
    if (!src!.subvolume) refuse('SUBVOL_NOT_SUBVOLUME', `'${source}' is not a subvolume: Not a Btrfs subvolume`);
    const d = probe(fs, dest);
    let dstdir: string;
    let name: string;
    if (d) {
      if (!isModelDir(fs, d)) refuse('SUBVOL_NOT_DIR', `'${dest}' exists and it is not a directory`);
      dstdir = dest;
      name = posixBasename(source);
    } else {
      dstdir = posixDirname(dest);
      name = posixBasename(dest);
    }
    if (!isSubvolName(name)) refuse('SUBVOL_BAD_NAME', `invalid snapshot name '${name}'`);
    if (enc.encode(name).length > BTRFS_NAME_LEN) refuse('SUBVOL_LONG_NAME', `snapshot name too long '${name}'`);
    const dir = targetDir(fs, dstdir, refuse);
    const cannot = (code: string, why: string): never => refuse(code, `cannot snapshot '${source}': ${why}`);
    if (findDirEntry(fs, dir.root, dir.ino, enc.encode(name))) cannot('SUBVOL_EXISTS', `'${dstdir}/${name}' exists: File exists`);
    if (readOnly(fs, dir.root)) cannot('SUBVOL_READONLY', `'${dstdir}' is in read-only subvolume ${dir.root}: Read-only file system`);
    const id = makeSnapshot(fs, src!.root, { parentRoot: dir.root, parentDir: dir.ino, name: enc.encode(name), readonly: opts.readonly === true });
    return { id, source, dest: `${dstdir}/${name}`, readonly: opts.readonly === true };
  });
}

export interface CreatedSubvolume {
  id: bigint;
  /** As btrfs-progs prints it: `Create subvolume 'DIR/NAME'`. */
  path: string;
}

/**
 * `btrfs subvolume create PATH...` on an image, all at one commit (a later path may be inside an earlier
 * one). Refused: the path exists, an invalid or too long name, its directory missing or in a read-only
 * subvolume.
 */
export async function createSubvolumes(image: string, paths: readonly string[]): Promise<CreatedSubvolume[]> {
  if (paths.length === 0) throw new ImageError('SUBVOL_USAGE', 'no subvolume to create');
  return changeImage(image, async (real, fs) => {
    await refuseLog(real, image);
    const refuse = (code: string, why: string): never => {
      throw new ImageError(code, why);
    };
    const out: CreatedSubvolume[] = [];
    for (const p of paths) {
      if (probe(fs, p)) refuse('SUBVOL_EXISTS', `target path already exists: ${p}`);
      const name = posixBasename(p);
      const dstdir = posixDirname(p);
      if (!isSubvolName(name)) refuse('SUBVOL_BAD_NAME', `invalid subvolume name: ${name}`);
      if (enc.encode(name).length > BTRFS_NAME_LEN) refuse('SUBVOL_LONG_NAME', `subvolume name too long: ${name}`);
      const dir = targetDir(fs, dstdir, refuse);
      if (readOnly(fs, dir.root)) refuse('SUBVOL_READONLY', `cannot create subvolume: '${dstdir}' is in read-only subvolume ${dir.root}: Read-only file system`);
      const id = makeSubvolume(fs, { parentRoot: dir.root, parentDir: dir.ino, name: enc.encode(name) });
      out.push({ id, path: `${dstdir}/${name}` });
    }
    return out;
  });
}

/** The default subvolume (what a mount without subvol= shows): its info, or undefined for the top level (5). */
export async function getDefaultSubvolume(image: string): Promise<SubvolumeInfo | undefined> {
  return withImageFile(image, async (src) => {
    const img = await BtrfsImage.open(src);
    const id = await img.defaultSubvolume();
    if (id === BTRFS_FS_TREE_OBJECTID) return undefined;
    const sv = (await img.listSubvolumes()).find((s) => s.id === id);
    if (!sv) throw new ImageError('IMAGE_NO_SUBVOLUME', `the default subvolume ${id} is not in ${image}`);
    return sv;
  });
}

/**
 * `btrfs subvolume set-default ID|PATH`: the root tree directory's "default" entry names the subvolume
 * (id 0 is the top level, as btrfs-progs takes it), and the DEFAULT_SUBVOL feature is set
 * (btrfs_ioctl_default_subvol). Returns its id.
 */
export async function setDefaultSubvolume(image: string, target: bigint | string): Promise<bigint> {
  return changeImage(image, async (real, fs) => {
    await refuseLog(real, image);
    let id: bigint;
    if (typeof target === 'bigint') {
      id = target === 0n ? BTRFS_FS_TREE_OBJECTID : target;
      const fsTree = id === BTRFS_FS_TREE_OBJECTID || (id >= BTRFS_FIRST_FREE_OBJECTID && id <= BTRFS_LAST_FREE_OBJECTID);
      if (!fsTree || !fs.rootItemKey(id)) throw new ImageError('IMAGE_NO_SUBVOLUME', `no subvolume with id ${id}: No such file or directory`);
    } else {
      const at = probe(fs, target);
      if (!at) throw new ImageError('SUBVOL_NO_SOURCE', `cannot access '${target}': No such file or directory`);
      if (!at.subvolume) throw new ImageError('SUBVOL_NOT_SUBVOLUME', `'${target}' is not a subvolume: Not a Btrfs subvolume`);
      id = at.root;
    }
    setDefaultEntry(fs, id);
    return id;
  });
}

/** The subvolume at `path` for `property get/set ... ro`, refused as btrfs-progs refuses other objects. */
async function subvolumeForProperty(img: BtrfsImage, path: string): Promise<SubvolumeInfo> {
  try {
    await img.resolve(path);
  } catch (e) {
    if (e instanceof ImageError && e.code === 'IMAGE_NO_ENTRY') throw new ImageError('PROPERTY_NO_OBJECT', `failed to detect object type: No such file or directory: ${path}`);
    throw e;
  }
  try {
    return await img.subvolumeByPath(path);
  } catch (e) {
    if (e instanceof ImageError && e.code === 'IMAGE_NO_SUBVOLUME') throw new ImageError('PROPERTY_NOT_SUBVOLUME', `object is not compatible with property: ro (${path} is not a subvolume)`);
    throw e;
  }
}

/** `btrfs property get PATH ro`: whether the subvolume at `path` is read-only. */
export async function getSubvolumeReadonly(image: string, path: string): Promise<boolean> {
  return withImageFile(image, async (src) => (await subvolumeForProperty(await BtrfsImage.open(src), path)).readonly);
}

/** The properties `btrfs property get` knows, in the order it lists them. */
export const PROPERTY_NAMES = ['ro', 'label', 'compression'] as const;
export type PropertyName = typeof PROPERTY_NAMES[number];

/**
 * `btrfs property get PATH [NAME]` as btrfs-progs 6.2 answers it, as `name=value` lines: `ro` of a
 * subvolume, `label` of the filesystem (the top level standing for the mount's root), `compression` of any
 * file or directory (listed only when set). Without a name, every one that applies, in btrfs-progs'
 * order; a name that does not apply is refused ("object is not compatible with property").
 */
export async function getProperties(image: string, path: string, name?: string): Promise<string[]> {
  if (name !== undefined && !(PROPERTY_NAMES as readonly string[]).includes(name)) throw new ImageError('PROPERTY_UNKNOWN', `unknown property: ${name}`);
  return withImageFile(image, async (src) => {
    const img = await BtrfsImage.open(src);
    let loc;
    try {
      loc = await img.resolve(path);
    } catch (e) {
      if (e instanceof ImageError && e.code === 'IMAGE_NO_ENTRY') throw new ImageError('PROPERTY_NO_OBJECT', `failed to detect object type: No such file or directory: ${path}`);
      throw e;
    }
    let sv: SubvolumeInfo | undefined;
    try {
      sv = await img.subvolumeByPath(path);
    } catch (e) {
      if (!(e instanceof ImageError && e.code === 'IMAGE_NO_SUBVOLUME')) throw e;
    }
    const applies: Record<PropertyName, boolean> = { ro: sv !== undefined, label: sv?.id === BTRFS_FS_TREE_OBJECTID, compression: true };
    if (name !== undefined && !applies[name as PropertyName]) throw new ImageError('PROPERTY_NOT_COMPATIBLE', `object is not compatible with property: ${name}`);
    const out: string[] = [];
    for (const p of PROPERTY_NAMES) {
      if ((name !== undefined && p !== name) || !applies[p]) continue;
      if (p === 'ro') out.push(`ro=${sv!.readonly}`);
      else if (p === 'label') out.push(`label=${new TextDecoder().decode(cString(img.superblock.label))}`);
      else {
        const x = (await img.xattrs(loc)).find((a) => new TextDecoder().decode(a.name) === 'btrfs.compression');
        if (x) out.push(`compression=${new TextDecoder().decode(x.value)}`);
      }
    }
    return out;
  });
}

const cString = (b: Uint8Array): Uint8Array => {
  const end = b.indexOf(0);
  return end < 0 ? b : b.subarray(0, end);
};

export interface ReadonlySet {
  /** Whether anything was written (setting the value a subvolume has changes nothing, as with btrfs-progs). */
  changed: boolean;
  /** The received uuid cleared (-f on a received subvolume going read-write). */
  clearedReceived: boolean;
  /** btrfs-progs' warning for a read-write subvolume with a received uuid. */
  warning?: string;
}

/**
 * `btrfs property set [-f] PATH ro true|false` on a subvolume, as btrfs-progs 6.2 and the kernel do it: a
 * read-only subvolume with a received uuid is made writable only with `force`, and then loses its received
 * uuid (btrfs-progs clears it with BTRFS_IOC_SET_RECEIVED_SUBVOL after the flag: an incremental receive
 * must not take a changed subvolume for the one it was received as); without it, refused (EPERM).
 * Setting the value it has writes nothing.
 */
export async function setSubvolumeReadonly(image: string, path: string, readonly: boolean, opts: { force?: boolean } = {}): Promise<ReadonlySet> {
  const sv = await withImageFile(image, async (src) => {
    const img = await BtrfsImage.open(src);
    if (img.hasLogTree) throw new ImageError('IMAGE_HAS_LOG', `${image} has a tree log: mount it (or receive into it) once to replay it first`);
    return subvolumeForProperty(img, path);
  });
  const received = sv.receivedUuid.some((b) => b !== 0);
  if (sv.readonly && readonly) return { changed: false, clearedReceived: false };
  if (sv.readonly && received && !opts.force) {
    throw new ImageError('PROPERTY_RECEIVED', 'cannot flip ro->rw with received_uuid set, use force if you really want that: Operation not permitted');
  }
  const warning = !sv.readonly && received ? 'read-write subvolume with received_uuid, this is bad' : undefined;
  if (!sv.readonly && !readonly) return { changed: false, clearedReceived: false, warning };
  const clear = sv.readonly && received;
  await changeImage(image, async (real, fs) => {
    await refuseLog(real, image);
    const at = lookupModelPath(fs, path);
    // the image cannot have changed since (no writer runs while changeImage holds its lock, and none ran
    // between: a change would be one committed by another process, looked for here)
    if (!at?.subvolume || at.root !== sv.id) throw new ImageError('PROPERTY_RACE', `${path} changed while it was looked at: try again`);
    setReadonlyProperty(fs, sv.id, readonly, clear);
  });
  return { changed: true, clearedReceived: clear, warning };
}
