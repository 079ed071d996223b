import { ImageError } from '../../errors.js';
import type { Block } from '../engine/block.js';
import { BTRFS_BLOCK_FLAG_FULL_BACKREF } from '../structs/constants.js';
import type { Filesystem } from './filesystem.js';
import { type BlockRefs, totalRefs } from './tree-refs.js';

type Ref = { root: bigint } | { parent: bigint };

const isFull = (r: BlockRefs): boolean => (r.flags & BTRFS_BLOCK_FLAG_FULL_BACKREF) !== 0n;

/**
 * Frees subvolume tree `rootid` as the kernel's cleaner does after `btrfs subvolume delete`
 * (btrfs_drop_snapshot), in one go: the tree lets go of every block it references. A block only it
 * references (one reference) is freed after what it points to — a leaf's data extents lose this tree's
 * references (by tree and inode, or by the leaf's address where the leaf has FULL_BACKREF), a node's
 * children are dropped in turn. A block other trees share (snapshots) loses this tree's reference only,
 * and stays with everything below it. Before that, the shared blocks this tree made since it was created
 * (generation above its ROOT_ITEM's offset) and still owns are switched to FULL_BACKREF with the blocks
 * it owns below them (walk_down_proc's UPDATE_BACKREF stage): their children were referenced "by tree
 * `rootid`", which would name a tree that no longer exists; they are referenced by parent address now,
 * as a copy-on-write by the owner would have left them (cow-refs.ts). The ROOT_ITEM, the tree's names and
 * the model's handle are the caller's (subvol-delete.ts).
 */
export function dropSubvolumeTree(fs: Filesystem, rootid: bigint): void {
  const tree = fs.trees.get(rootid)?.engine;
  const key = fs.rootItemKey(rootid);
  if (!tree || !key) throw new ImageError('IMAGE_INTERNAL', `no subvolume tree ${rootid} to drop`);
  // the ROOT_ITEM's offset (0 for a subvolume made empty; for a snapshot the generation its own blocks are
  // newer than: subvol.ts snapshotKeyOffset, images keyed otherwise rekeyed on open): older blocks are not its own
  const createdAt = key.offset;
  const { refs } = fs;
  const { table } = refs;
  let sinceTrim = 0;
  /**
   * Decoded blocks of a large tree are let go as the walks go (the path holds its own). The cache is
   * trimmed on every change of another tree (a put), but a walk may go a long way without one: the
   * directory leaves of a tree of 500,000 files in 100 directories, 4,000 leaves with no file extent,
   * held 220 MB until the first data reference changed.
   */
  const walked = (): void => {
    if (++sinceTrim >= 256) {
      sinceTrim = 0;
      fs.store.trim();
    }
  };

  /** walk_down_proc / do_walk_down at UPDATE_BACKREF: `b` (shared) and what this tree owns under it go FULL_BACKREF. */
  const toFullBackref = (b: Block, r: BlockRefs): void => {
    if (b.owner !== rootid) return; // another tree's block: its children are referenced by that tree
    walked();
    if (!isFull(r)) {
      refs.incRef(tree, b, true);
      refs.decRef(tree, b, false);
      table.setFullBackref(b.bytenr);
    }
    for (let i = 0; b.level > 0 && i < b.nritems; i++) {
      if (b.ptrGens[i]! <= createdAt) continue;
      const cr = table.must(b.ptrs[i]!);
      if (b.level === 1 && isFull(cr)) continue; // a leaf's data is referenced by the leaf's address already
      toFullBackref(tree.child(b, i), cr);
    }
  };

  /** `b` (references `r`), referenced by this tree alone (through `ref`), freed with what only it references (walk_up_proc). */
  const drop = (b: Block, r: BlockRefs, ref: Ref): void => {
    const full = isFull(r);
    if (!full && b.owner !== rootid) {
      // references by tree name the owner: a block of another tree reached through this one alone would
      // have been switched to FULL_BACKREF when that tree let go of it (the kernel stops with EIO here)
      throw new ImageError('IMAGE_BAD_BACKREF', `tree block ${b.bytenr} of subvolume ${rootid} is owned by tree ${b.owner} and has no FULL_BACKREF`, { offset: b.bytenr });
    }
    if (b.level === 0) {
      refs.decRef(tree, b, full); // its file extents' data references
    } else {
      for (let i = 0; i < b.nritems; i++) {
        const child = b.ptrs[i]!;
        const childRef: Ref = full ? { parent: b.bytenr } : { root: rootid };
        const cr = table.must(child);
        if (totalRefs(cr) > 1) {
          if (b.ptrGens[i]! > createdAt && !(b.level === 1 && isFull(cr))) toFullBackref(tree.child(b, i), cr);
          table.drop(child, childRef);
        } else {
          drop(tree.child(b, i), cr, childRef);
        }
      }
    }
    const left = table.drop(b.bytenr, ref);
    if (left !== 0) throw new ImageError('IMAGE_INTERNAL', `tree block ${b.bytenr} still has ${left} references after subvolume ${rootid} dropped its last`, { offset: b.bytenr });
    refs.release(b.bytenr, rootid, b.level);
    walked();
  };

  const top = tree.rootBlock();
  const r = table.must(top.bytenr);
  if (totalRefs(r) > 1) {
    // a root block is never shared (a snapshot gets a copy of it): refuse rather than guess
    throw new ImageError('IMAGE_BAD_BACKREF', `root block ${top.bytenr} of subvolume ${rootid} has ${totalRefs(r)} references`, { offset: top.bytenr });
  }
  drop(top, r, { root: rootid });
  // the tree's block count goes with its ROOT_ITEM
  fs.store.takeUsedDelta(rootid);
}

