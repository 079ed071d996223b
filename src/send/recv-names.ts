import { ImageError } from '../errors.js';
import type { ImageReader } from '../image/read/image.js';
import { inodeLinks, lookupName } from '../image/read/inodes.js';
import { BTRFS_FIRST_FREE_OBJECTID } from '../image/structs.js';
import { LruMap } from './lru.js';
import { sentPath } from './names.js';

/**
 * An inode version as the receiver holds it during an incremental send: `s<ino>` an inode both trees have
 * (same number, generation and type), `p<ino>` the parent's inode that the sent subvolume no longer has
 * (deleted, or its number reused), `c<ino>` an inode new in the sent subvolume.
 */
export type VKey = string;
export const ROOT_KEY: VKey = `s${BTRFS_FIRST_FREE_OBJECTID}`;

/** One directory entry at the receiver: name `name` in directory version `dir`. */
export interface Entry {
  dir: VKey;
  name: Uint8Array;
}

/** A string naming the entry, for sets of entries: its directory's key and its name's bytes as latin1 (at most 255). */
export const entryId = (e: Entry): string => `${e.dir}/${String.fromCharCode.apply(null, e.name as unknown as number[])}`;

/**
 * Where each inode is at the receiver while the names are being changed: the inodes the send moves have
 * their current entries here; every other inode is still where the parent has it (its references are the
 * same in both trees, into directories that are the same in both). Only moved inodes are held, so memory
 * follows the size of the change.
 */
export class RecvNamespace {
  private readonly where = new Map<VKey, Entry[]>();
  /** Inodes not moved, looked up as path prefixes again and again. */
  private readonly unmoved = new LruMap<VKey, Entry>(8192);
  private readonly orphanNames = new Map<VKey, Uint8Array>();
  private readonly usedOrphans = new Set<string>();

  constructor(
    private readonly img: ImageReader,
    private readonly parentRoot: bigint,
    private readonly sendRoot: bigint,
    /** The version key of directory `ino` as the parent's references name it. */
    private readonly parentDirKey: (ino: bigint) => VKey,
  ) {}

  set(v: VKey, entries: Entry[]): void {
    this.where.set(v, entries);
  }

  entries(v: VKey): Entry[] | undefined {
    return this.where.get(v);
  }

  /** gen_unique_name: o<ino>-<gen>-<idx>, the first idx free in the top directory of both trees. */
  async orphan(v: VKey, ino: bigint, gen: bigint): Promise<Entry> {
    let name = this.orphanNames.get(v);
    if (!name) {
      for (let idx = 0; ; idx++) {
        name = new TextEncoder().encode(`o${ino}-${gen}-${idx}`);
        const s = Buffer.from(name).toString('latin1');
        if (this.usedOrphans.has(s)) continue;
        const top = (root: bigint) => lookupName(this.img, { root, ino: BTRFS_FIRST_FREE_OBJECTID }, name!);
        if (!(await top(this.parentRoot)) && !(await top(this.sendRoot))) break;
      }
      this.usedOrphans.add(Buffer.from(name).toString('latin1'));
      this.orphanNames.set(v, name);
    }
    return { dir: ROOT_KEY, name };
  }

  /** The receiver's path of version `v` now. */
  async path(v: VKey): Promise<Uint8Array> {
    return sentPath(await this.parts(v), this.sendRoot, BigInt(v.slice(1)));
  }

  /** The receiver's path of entry `e` now. */
  async entryPath(e: Entry): Promise<Uint8Array> {
    const parts = await this.parts(e.dir);
    parts.push(e.name);
    return sentPath(parts, this.sendRoot, BigInt(e.dir.slice(1)), true);
  }

  /** The names on the way from the top directory to version `v`, in that order. */
  private async parts(v: VKey): Promise<Uint8Array[]> {
    const parts: Uint8Array[] = [];
    for (let depth = 0; v !== ROOT_KEY; depth++) {
      if (depth > 4096) throw new ImageError('IMAGE_DIR_CYCLE', `inode ${v.slice(1)}: its references loop`);
      const e = await this.first(v);
      parts.push(e.name);
      v = e.dir;
    }
    return parts.reverse();
  }

  /** Whether directory version `d` is `v` or inside it at the receiver now. */
  async within(d: VKey, v: VKey): Promise<boolean> {
    for (let depth = 0; d !== ROOT_KEY; depth++) {
      if (d === v) return true;
      if (depth > 4096) throw new ImageError('IMAGE_DIR_CYCLE', `inode ${d.slice(1)}: its references loop`);
      d = (await this.first(d)).dir;
    }
    return false;
  }

  private async first(v: VKey): Promise<Entry> {
    const held = this.where.get(v);
    if (held) {
      if (!held[0]) throw new ImageError('IMAGE_BAD_INODE_REF', `inode ${v.slice(1)} has no name at the receiver`);
      return held[0];
    }
    // not moved: where the parent has it
    const known = this.unmoved.get(v);
    if (known) return known;
    const ino = BigInt(v.slice(1));
    const first = (await inodeLinks(this.img, { root: this.parentRoot, ino }))[0];
    if (!first) throw new ImageError('IMAGE_BAD_INODE_REF', `inode ${ino} of subvolume ${this.parentRoot} has no INODE_REF or INODE_EXTREF`, { command: 'btrfs_inode_ref' });
    const e = { dir: this.parentDirKey(first.parent), name: first.name };
    this.unmoved.set(v, e);
    return e;
  }
}
