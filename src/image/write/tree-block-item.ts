import {
  BTRFS_EXTENT_ITEM_KEY, BTRFS_FEATURE_INCOMPAT_SKINNY_METADATA, BTRFS_METADATA_ITEM_KEY,
} from '../structs/constants.js';
import type { BtrfsKey } from '../structs/fs-items.js';
import type { BtrfsSuperBlock } from '../structs/superblock.js';
import { type BtrfsExtentInlineRef, encodeExtentItem } from '../structs/tree-items.js';
import type { Key } from './items.js';

/**
 * The extent tree's head item of a tree block, in the form the image's features ask for:
 * - skinny-metadata: (bytenr, METADATA_ITEM, level), btrfs_extent_item then the inline refs;
 * - without it (mkfs.btrfs -O ^skinny-metadata, filesystems made before 3.10): (bytenr, EXTENT_ITEM,
 *   nodesize), btrfs_extent_item, a btrfs_tree_block_info (a key and the level), then the inline refs,
 *   as the kernel's alloc_reserved_tree_block writes it without the SKINNY_METADATA flag.
 * The tree_block_info key is the block's first key when the kernel allocated it and is never updated
 * after; nothing trusts it (btrfs check and the kernel's tree checker read the level only, relocation
 * reads the block's own first key). An item read from the image keeps its key when it is rewritten; a
 * block this writer allocates gets the zero key, as the kernel writes it for a block allocated without
 * one (a new tree's root).
 */
export interface TreeBlockHead {
  refs: bigint;
  generation: bigint;
  flags: bigint;
  level: number;
  /** tree_block_info key of an existing non-skinny item. */
  infoKey?: BtrfsKey;
  inline_refs: BtrfsExtentInlineRef[];
}

export type TreeBlockItemCodec = (bytenr: bigint, h: TreeBlockHead) => { key: Key; data: Uint8Array };

const ZERO_KEY: BtrfsKey = { objectid: 0n, type: 0, offset: 0n };

export function treeBlockItemCodec(sb: Pick<BtrfsSuperBlock, 'incompat_flags' | 'nodesize'>): TreeBlockItemCodec {
  if (sb.incompat_flags & BTRFS_FEATURE_INCOMPAT_SKINNY_METADATA) {
    return (bytenr, h) => ({
      key: { objectid: bytenr, type: BTRFS_METADATA_ITEM_KEY, offset: BigInt(h.level) },
      data: encodeExtentItem({ refs: h.refs, generation: h.generation, flags: h.flags, inline_refs: h.inline_refs }),
    });
  }
  const nodesize = BigInt(sb.nodesize);
  return (bytenr, h) => ({
    key: { objectid: bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: nodesize },
    data: encodeExtentItem({
      refs: h.refs, generation: h.generation, flags: h.flags, inline_refs: h.inline_refs,
      tree_block_info: { key: h.infoKey ?? ZERO_KEY, level: h.level },
    }),
  });
}
