import { checkTreeCopy } from '../image/read/block-check.js';
import type { ImageReader } from '../image/read/image.js';
import { statInode } from '../image/read/inodes.js';
import type { SubvolumeInfo } from '../image/read/subvols.js';
import { metadataFsid } from '../image/read/superblock.js';
import type { TreeRoot } from '../image/read/tree.js';
import {
  BTRFS_EXTENT_DATA_KEY, BTRFS_EXTENT_DATA_REF_KEY, BTRFS_EXTENT_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FILE_EXTENT_INLINE,
  BTRFS_SHARED_DATA_REF_KEY, decodeExtentDataRef, decodeExtentItem, decodeFileExtentItem, decodeHeader,
} from '../image/structs.js';
import type { CloneQuery, SizedClone } from './clone-index.js';
import { LruMap } from './lru.js';
import { SendNames } from './names.js';
import { U64_MAX } from '../image/structs/constants.js';

/** A subvolume extents may be cloned from: the receiver has it (the parent, a -c source, the one being received). */
export interface CloneRoot {
  tree: TreeRoot;
  uuid: Uint8Array;
  ctransid: bigint;
  path: (ino: bigint) => Promise<Uint8Array>;
  sizeOf: (ino: bigint) => Promise<bigint>;
  /** Whether the receiver already has inode `ino`'s bytes up to `end` as this tree has them. */
  usable: (ino: bigint, end: bigint) => boolean;
  /**
   * A -c source: it may share with the sent subvolume the tree block holding an item that is sent (a
   * snapshot of it), so it is looked in even for an extent of a single reference (the parent would have
   * that item unchanged, not sent).
   */
  sharesLeaves?: boolean;
}

/** The kernel gives up cloning an extent with more references than this (SEND_MAX_EXTENT_REFS). */
const MAX_REFS = 1024n;
/** Candidates looked at per extent and items scanned per candidate: the cost stays per extent, not per subvolume. */
const MAX_CANDIDATES = 64;
const MAX_SCAN = 64;
const MAX_EXTENT = 128n * 1024n * 1024n;

/**
 * find_extent_clone through the extent tree: the data extent's back references (EXTENT_DATA_REF: root,
 * inode, file offset minus extent offset; SHARED_DATA_REF: a leaf shared by snapshots) name the file
 * extent items that use it; each is looked up again in the subvolumes the receiver has, since a snapshot
 * sees items whose references another tree owns.
 */
export class Backrefs {
  constructor(private readonly img: ImageReader, private readonly roots: CloneRoot[]) {}

  /** Whether there is any subvolume to look in: without one, no extent tree walk is worth doing. */
  get empty(): boolean {
    return this.roots.length === 0;
  }

  /**
   * Each clone root's best reference to the data extent at `bytenr` usable for query `q` (the kernel's
   * iterate_backrefs: per root the one covering most, a root's search ending at one covering the whole
   * extent); pickClone chooses among them.
   */
  async find(bytenr: bigint, q: CloneQuery): Promise<SizedClone[]> {
    if (this.roots.length === 0) return [];
    const { cands, single } = await this.candidates(bytenr);
    const out: SizedClone[] = [];
    for (const root of this.roots) {
      // an extent of one reference is seen only through the one tree block holding it, which the sent
      // subvolume has (the kernel's backref walk finds the roots sharing it)
      if (single && !root.sharesLeaves) continue;
      let choice: SizedClone | undefined;
      for (const c of cands) {
        for (const it of await this.items(root.tree, bytenr, c)) {
          let offset = it.key;
          if (!q.compressed) {
            if (q.dataOffset < it.dataOffset || q.dataOffset >= it.dataOffset + it.numBytes) continue;
            offset += q.dataOffset - it.dataOffset;
          }
          if (!root.usable(c.ino, offset + q.extentLen)) continue;
          if (!choice || it.numBytes > choice.numBytes) choice = { root, ino: c.ino, offset, numBytes: it.numBytes };
        }
        if (choice && choice.numBytes >= q.extentLen) break;
      }
      if (choice) out.push(choice);
    }
    return out;
  }

  /** (inode, exact key or key - data offset) of every reference, from the extent item and its keyed refs. */
  private async candidates(bytenr: bigint): Promise<{ cands: { ino: bigint; key?: bigint; refOffset?: bigint }[]; single: boolean }> {
    const none = { cands: [], single: false };
    let single = false;
    const out: { ino: bigint; key?: bigint; refOffset?: bigint }[] = [];
    const seen = new Set<string>();
    const add = (c: { ino: bigint; key?: bigint; refOffset?: bigint }): void => {
      const id = `${c.ino}/${c.key}/${c.refOffset}`;
      if (out.length < MAX_CANDIDATES && !seen.has(id)) {
        seen.add(id);
        out.push(c);
      }
    };
    const leaves: bigint[] = [];
    const extentTree = await this.img.tree(BTRFS_EXTENT_TREE_OBJECTID);
    const from = { objectid: bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: 0n };
    const to = { objectid: bytenr, type: 255, offset: U64_MAX };
    for await (const it of await this.img.trees.shortRange(extentTree, from, to)) {
      if (it.key.type === BTRFS_EXTENT_ITEM_KEY) {
        const ei = decodeExtentItem(it.data, it.key.type);
        // too many and the kernel does not look either; a single one is the item being sent, which only a
        // -c source sharing its tree block can see too
        if (ei.refs > MAX_REFS || (ei.refs <= 1n && !this.roots.some((r) => r.sharesLeaves))) return none;
        single = ei.refs <= 1n;
        for (const r of ei.inline_refs) {
          if (r.type === BTRFS_EXTENT_DATA_REF_KEY) add({ ino: r.objectid, refOffset: r.offset });
          else if (r.type === BTRFS_SHARED_DATA_REF_KEY) leaves.push(r.parent);
        }
      } else if (it.key.type === BTRFS_EXTENT_DATA_REF_KEY) {
        const r = decodeExtentDataRef(it.data);
        add({ ino: r.objectid, refOffset: r.offset });
      } else if (it.key.type === BTRFS_SHARED_DATA_REF_KEY) {
        leaves.push(it.key.offset);
      }
    }
    for (const leaf of leaves.slice(0, MAX_CANDIDATES)) {
      for (const it of (await this.leaf(leaf))?.items ?? []) {
        if (it.key.type !== BTRFS_EXTENT_DATA_KEY) continue;
        const fe = decodeFileExtentItem(it.data);
        if (fe.type !== BTRFS_FILE_EXTENT_INLINE && fe.disk_bytenr === bytenr) add({ ino: it.key.objectid, key: it.key.offset });
      }
    }
    return { cands: out, single };
  }

  /** A shared leaf named by a SHARED_DATA_REF: read for its keys only (what it says is checked in the trees). */
  private async leaf(bytenr: bigint) {
    const sb = this.img.superblock;
    const raw = await this.img.readLogical(bytenr, sb.nodesize, 'tree block');
    const h = decodeHeader(raw);
    if (h.level !== 0) return undefined;
    const r = checkTreeCopy(raw, sb.nodesize, bytenr, { level: 0, generation: h.generation, owner: h.owner }, metadataFsid(sb), sb.csum_type, () => true);
    return 'tb' in r ? r.tb : undefined;
  }

  /** The items of `tree` that a candidate names and that reference `bytenr`. */
  private async items(tree: TreeRoot, bytenr: bigint, c: { ino: bigint; key?: bigint; refOffset?: bigint }) {
    const out: { key: bigint; dataOffset: bigint; numBytes: bigint }[] = [];
    const start = c.key ?? c.refOffset!;
    const end = c.key ?? c.refOffset! + MAX_EXTENT;
    let scanned = 0;
    const range = [{ objectid: c.ino, type: BTRFS_EXTENT_DATA_KEY, offset: start }, { objectid: c.ino, type: BTRFS_EXTENT_DATA_KEY, offset: end }] as const;
    for await (const it of this.img.trees.iterate(tree, range[0], range[1])) {
      if (++scanned > MAX_SCAN) break;
      const fe = decodeFileExtentItem(it.data);
      if (fe.type === BTRFS_FILE_EXTENT_INLINE || fe.disk_bytenr !== bytenr) continue;
      if (c.refOffset !== undefined && it.key.offset - fe.offset !== c.refOffset) continue;
      out.push({ key: it.key.offset, dataOffset: fe.offset, numBytes: fe.num_bytes });
    }
    return out;
  }
}

/** The UUID a stream names a subvolume by: the one it was received from, else its own. */
export function streamUuid(sv: SubvolumeInfo): Uint8Array {
  return sv.receivedUuid.every((b) => b === 0) ? sv.uuid : sv.receivedUuid;
}

/** A read-only subvolume as a clone source, its paths as they are in it (the receiver has it as it is). */
export async function readOnlyCloneRoot(img: ImageReader, sv: SubvolumeInfo, sharesLeaves = false): Promise<CloneRoot> {
  const names = new SendNames(img, sv.id);
  names.progress = U64_MAX;
  const sizes = new LruMap<bigint, bigint>(1 << 12);
  return {
    tree: await img.tree(sv.id),
    uuid: streamUuid(sv),
    ctransid: sv.ctransid,
    path: (ino) => names.path(ino),
    sizeOf: async (ino) => {
      let s = sizes.get(ino);
      if (s === undefined) {
        s = (await statInode(img, { root: sv.id, ino })).size;
        sizes.set(ino, s);
      }
      return s;
    },
    usable: () => true,
    sharesLeaves,
  };
}
