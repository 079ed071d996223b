import { ImageError, SendError } from '../errors.js';
import type { ImageReader } from '../image/read/image.js';
import { inodeLinks, lookupName, statInode } from '../image/read/inodes.js';
import { BTRFS_FIRST_FREE_OBJECTID } from '../image/structs.js';
import { joinPath } from '../util/bytes.js';
import { LruMap } from './lru.js';

const CACHE = 8192;

/**
 * The kernel's send builds every path in a buffer of PATH_MAX bytes with its NUL (fs_path_ensure_buf) and
 * fails with ENAMETOOLONG past it; `btrfs receive` could not apply such a path either (it joins paths in
 * PATH_MAX buffers too). A deep tree the filesystem holds can still not be sent: refused the same way,
 * before its command is written.
 */
const PATH_MAX = 4096;

/** Path components joined by '/', refused at PATH_MAX bytes or more as the kernel's send refuses them. */
export function sentPath(parts: readonly Uint8Array[], root: bigint, ino: bigint, entry = false): Uint8Array {
  const path = joinPath(parts);
  if (path.length >= PATH_MAX) {
    const start = Buffer.from(path.subarray(0, 64)).toString('utf8');
    throw new SendError('SEND_PATH_TOO_LONG', `the path of ${entry ? 'an entry of directory inode' : 'inode'} ${ino} of subvolume ${root} is ${path.length} bytes (${JSON.stringify(start)}...): the kernel's send refuses paths of PATH_MAX (${PATH_MAX}) bytes or more (ENAMETOOLONG)`);
  }
  return path;
}

/**
 * Where an inode is on the receiving side at this point of a full send (the kernel's get_cur_path):
 * inodes already processed (ino < progress) are at their first reference (first INODE_REF, else first
 * INODE_EXTREF); others still carry their orphan name o<ino>-<gen>-<idx> in the subvolume's top
 * directory. Lookups go through bounded caches, so memory does not grow with the subvolume.
 */
export class SendNames {
  /** The kernel's send_progress: inodes below it are at their final place. */
  progress = 0n;
  private readonly refs = new LruMap<bigint, { dir: bigint; name: Uint8Array }>(CACHE);
  private readonly gens = new LruMap<bigint, bigint>(CACHE);
  private readonly orphans = new LruMap<bigint, Uint8Array>(CACHE);

  constructor(private readonly img: ImageReader, readonly root: bigint) {}

  async gen(ino: bigint): Promise<bigint> {
    let g = this.gens.get(ino);
    if (g === undefined) {
      g = (await statInode(this.img, { root: this.root, ino })).generation;
      this.gens.set(ino, g);
    }
    return g;
  }

  noteGen(ino: bigint, gen: bigint): void {
    this.gens.set(ino, gen);
  }

  async firstRef(ino: bigint): Promise<{ dir: bigint; name: Uint8Array }> {
    let r = this.refs.get(ino);
    if (!r) {
      const first = (await inodeLinks(this.img, { root: this.root, ino }))[0];
      if (!first) throw new ImageError('IMAGE_BAD_INODE_REF', `inode ${ino} of subvolume ${this.root} has no INODE_REF or INODE_EXTREF`, { command: 'btrfs_inode_ref' });
      r = { dir: first.parent, name: first.name };
      this.refs.set(ino, r);
    }
    return r;
  }

  /** gen_unique_name: o<ino>-<gen>-<idx> with the first idx not already a name in the top directory. */
  async orphanName(ino: bigint): Promise<Uint8Array> {
    let name = this.orphans.get(ino);
    if (!name) {
      const gen = await this.gen(ino);
      const top = { root: this.root, ino: BTRFS_FIRST_FREE_OBJECTID };
      for (let idx = 0; ; idx++) {
        name = new TextEncoder().encode(`o${ino}-${gen}-${idx}`);
        if (!(await lookupName(this.img, top, name))) break;
      }
      this.orphans.set(ino, name);
    }
    return name;
  }

  /** Path of `ino` relative to the subvolume, as the receiver sees it now. */
  async path(ino: bigint): Promise<Uint8Array> {
    return sentPath(await this.parts(ino), this.root, ino);
  }

  /** Path of entry `name` in directory `dir`. */
  async entryPath(dir: bigint, name: Uint8Array): Promise<Uint8Array> {
    const parts = await this.parts(dir);
    parts.push(name);
    return sentPath(parts, this.root, dir, true);
  }

  /** The names on the way from the top directory to `ino`, in that order. */
  private async parts(ino: bigint): Promise<Uint8Array[]> {
    const parts: Uint8Array[] = [];
    for (let depth = 0; ino !== BTRFS_FIRST_FREE_OBJECTID; depth++) {
      if (depth > 4096) throw new ImageError('IMAGE_DIR_CYCLE', `inode ${ino} of subvolume ${this.root}: its references loop`);
      if (ino >= this.progress) {
        parts.push(await this.orphanName(ino));
        break;
      }
      const r = await this.firstRef(ino);
      parts.push(r.name);
      ino = r.dir;
    }
    return parts.reverse();
  }
}
