import { BTRFS_BLOCK_FLAG_FULL_BACKREF, BTRFS_EXTENT_DATA_KEY, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FILE_EXTENT_INLINE } from '../structs/constants.js';
import { decodeFileExtentItem } from '../structs/fs-items.js';
import type { Block } from '../engine/block.js';
import { BTree } from '../engine/ctree.js';
import type { CowHooks, TreeBlockSpace } from '../engine/store.js';
import { addDataRef, changeSharedDataRef, dropDataRef } from './extents.js';
import { type FilesystemModel, isSubvolumeTree } from './model.js';
import type { MetadataSpace } from './tree-space.js';
import { treeBlockItemCodec } from './tree-block-item.js';
import { TreeBlockRefTable, totalRefs } from './tree-refs.js';

/**
 * Reference bookkeeping of shared tree blocks, as kernel ctree.c/extent-tree.c keep it: a new block
 * gets one reference by its tree; copy-on-write of a block another tree also references gives the
 * block's children a reference from the copy (update_ref_for_cow, btrfs_inc_ref/btrfs_dec_ref, with
 * FULL_BACKREF when the owner itself moves away); a snapshot is a copy of the source's root whose
 * children gain a reference by the new tree (btrfs_copy_root). Tree block references are queued
 * (TreeBlockRefTable) and written into the extent tree by the commit; blocks of trees that are never
 * shared (extent, root, free space, chunk, dev, csum, uuid trees) have exactly one reference, by their
 * tree, so nothing about them is read while their tree changes.
 */
export class CowRefs implements TreeBlockSpace, CowHooks {
  readonly table: TreeBlockRefTable;

  constructor(private readonly fs: FilesystemModel, private readonly meta: MetadataSpace) {
    this.table = new TreeBlockRefTable(() => fs.tree(BTRFS_EXTENT_TREE_OBJECTID), treeBlockItemCodec(fs.sb));
  }

  alloc(owner: bigint, level: number): bigint {
    const bytenr = this.meta.alloc(owner, level);
    // taken from free space: no item can exist there unless the bookkeeping is wrong (not looked up)
    this.table.created(bytenr, level, this.fs.transid, owner, false);
    return bytenr;
  }

  /** btrfs_free_tree_block: drop tree `owner`'s reference; the space is free once nobody references it. */
  free(bytenr: bigint, owner: bigint, level: number, fresh: boolean): boolean {
    if (!isSubvolumeTree(owner)) {
      this.table.dropOnly(bytenr, level);
      this.meta.free(bytenr, owner, level, fresh);
      return true;
    }
    if (this.table.drop(bytenr, { root: owner }) > 0) return false;
    this.meta.free(bytenr, owner, level, fresh);
    return true;
  }

  /** A block whose last reference its caller dropped (table.drop gave 0): its space is free (btrfs_free_tree_block). */
  release(bytenr: bigint, owner: bigint, level: number): void {
    this.meta.free(bytenr, owner, level, this.fs.store.discard(bytenr, owner));
  }

  /** update_ref_for_cow (the non-relocation cases). */
  cowed(tree: BTree, buf: Block, cow: Block): void {
    if (!isSubvolumeTree(tree.rootid)) return; // one reference, by the tree: nothing to move
    const r = this.table.must(buf.bytenr);
    const full = (r.flags & BTRFS_BLOCK_FLAG_FULL_BACKREF) !== 0n;
    if (totalRefs(r) > 1) {
      if (buf.owner === tree.rootid && !full) {
        // the owner moves away from a block others keep: they reach its children through it by address
        this.incRef(tree, buf, true);
        this.table.setFullBackref(buf.bytenr);
      } else {
        this.incRef(tree, cow, false);
      }
    } else if (full) {
      this.incRef(tree, cow, false);
      this.decRef(tree, buf, true);
    }
  }

  /** btrfs_inc_ref: every child of `b` (tree blocks, or data extents for a leaf) gains a reference. */
  incRef(tree: BTree, b: Block, full: boolean): void {
    this.children(tree, b, full, +1);
  }

  /** btrfs_dec_ref. */
  decRef(tree: BTree, b: Block, full: boolean): void {
    this.children(tree, b, full, -1);
  }

  private children(tree: BTree, b: Block, full: boolean, sign: 1 | -1): void {
    if (b.level > 0) {
      for (const child of b.ptrs) {
        const ref = full ? { parent: b.bytenr } : { root: tree.rootid };
        if (sign > 0) this.table.add(child, ref);
        else if (this.table.drop(child, ref) === 0) this.meta.free(child, tree.rootid, b.level - 1, false);
      }
      return;
    }
    for (let i = 0; i < b.nritems; i++) {
      const key = b.keys[i]!;
      if (key.type !== BTRFS_EXTENT_DATA_KEY) continue;
      const data = b.data[i]!;
      if (data[20] === BTRFS_FILE_EXTENT_INLINE) continue;
      const fe = decodeFileExtentItem(data);
      if (fe.disk_bytenr === 0n) continue;
      if (full) changeSharedDataRef(this.fs, fe.disk_bytenr, b.bytenr, sign);
      else if (sign > 0) addDataRef(this.fs, fe.disk_bytenr, tree.rootid, key.objectid, BigInt.asUintN(64, key.offset - fe.offset));
      else dropDataRef(this.fs, fe.disk_bytenr, tree.rootid, key.objectid, BigInt.asUintN(64, key.offset - fe.offset));
    }
  }
}

/**
 * btrfs_copy_root: tree `newId` starts as a copy of `src`'s root block; the blocks (or data extents)
 * under it gain a reference by the new tree and are shared from then on. Blocks `src` made in this
 * transaction are now shared too: they are copied on their next change, like committed ones.
 */
export function copyRoot(refs: CowRefs, src: BTree, newId: bigint): BTree {
  const store = src.store;
  const top = src.rootBlock();
  const unfresh = (b: Block): void => {
    if (b.level === 0) return;
    for (let i = 0; i < b.nritems; i++) {
      if (b.ptrGens[i] !== store.transid) continue; // older blocks are not this transaction's
      const c = src.child(b, i);
      if (!store.isFresh(c)) continue;
      store.unfresh(c);
      unfresh(c);
    }
  };
  unfresh(top);
  const copy = store.copy(top, newId);
  const t = new BTree(store, newId, { bytenr: copy.bytenr, level: copy.level, generation: copy.generation });
  t.rootChanged = true;
  refs.incRef(t, copy, false);
  return t;
}
