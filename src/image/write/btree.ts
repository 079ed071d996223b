import { BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE, BTRFS_KEY_PTR_SIZE } from '../structs/tree-block.js';

/** Limits of a tree block of `nodesize` bytes (the trees themselves are engine/ B-trees). */

/** Largest item payload a leaf can hold (BTRFS_MAX_ITEM_SIZE). */
export function maxItemSize(nodesize: number): number {
  return nodesize - BTRFS_HEADER_SIZE - BTRFS_ITEM_SIZE;
}

export function maxKeyPtrs(nodesize: number): number {
  return Math.floor((nodesize - BTRFS_HEADER_SIZE) / BTRFS_KEY_PTR_SIZE);
}
