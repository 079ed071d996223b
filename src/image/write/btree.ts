import { BTRFS_BACKREF_REV_SHIFT, BTRFS_HEADER_FLAG_WRITTEN, BTRFS_MIXED_BACKREF_REV } from '../structs/constants.js';
import { BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE, BTRFS_KEY_PTR_SIZE, buildLeaf, buildNode } from '../structs/tree-block.js';
import type { Item, Key } from './item-map.js';

/**
 * Packing a sorted item list into btrfs tree blocks (leaves and internal nodes).
 *
 * Layout and serialization are split: commit first needs only the NUMBER of blocks each tree takes (to
 * allocate addresses and derive the extent tree, whose size in turn depends on those counts), and only
 * then the bytes. Leaves are filled greedily; the kernel splits full leaves on its own when it later
 * modifies the tree, so a dense layout is valid and smallest.
 */
const HEADER_FLAGS = BTRFS_HEADER_FLAG_WRITTEN | (BTRFS_MIXED_BACKREF_REV << BTRFS_BACKREF_REV_SHIFT);

/** Largest item payload a leaf can hold (BTRFS_MAX_ITEM_SIZE). */
export function maxItemSize(nodesize: number): number {
  return nodesize - BTRFS_HEADER_SIZE - BTRFS_ITEM_SIZE;
}

export function maxKeyPtrs(nodesize: number): number {
  return Math.floor((nodesize - BTRFS_HEADER_SIZE) / BTRFS_KEY_PTR_SIZE);
}

/** Blocks of one level: each entry is the index range [start, end) of the children (items for level 0). */
export interface TreeLayout {
  levels: Array<Array<[number, number]>>;
  blockCount: number;
}

/** Partition items (given only their payload sizes, in key order) into leaves, then key pointers into nodes. */
export function layoutTree(itemSizes: Iterable<number>, nodesize: number): TreeLayout {
  const room = nodesize - BTRFS_HEADER_SIZE;
  const leaves: Array<[number, number]> = [];
  let start = 0;
  let used = 0;
  let i = 0;
  for (const size of itemSizes) {
    const need = BTRFS_ITEM_SIZE + size;
    if (need > room) throw new RangeError(`item of ${size} bytes exceeds the leaf size`);
    if (used + need > room) {
      leaves.push([start, i]);
      start = i;
      used = 0;
    }
    used += need;
    i++;
  }
  if (leaves.length === 0 || start < i) leaves.push([start, i]);
  const levels: Array<Array<[number, number]>> = [leaves];
  const fanout = maxKeyPtrs(nodesize);
  let below = leaves.length;
  while (below > 1) {
    // spread children evenly so no node is left nearly empty at the right edge
    const n = Math.ceil(below / fanout);
    const nodes: Array<[number, number]> = [];
    for (let k = 0; k < n; k++) nodes.push([Math.floor((k * below) / n), Math.floor(((k + 1) * below) / n)]);
    levels.push(nodes);
    below = n;
  }
  return { levels, blockCount: levels.reduce((s, l) => s + l.length, 0) };
}

export interface BlockHeaderInfo {
  fsid: Uint8Array;
  chunkTreeUuid: Uint8Array;
  generation: bigint;
  owner: bigint;
  /** The superblock's csum_type. */
  csumType: number;
}

export interface SerializedBlock {
  bytenr: bigint;
  level: number;
  bytes: Uint8Array;
}

/**
 * Serialize a laid-out tree, block by block (so only one block is in memory at a time). `items` must give
 * the very items the layout was made from, in order; it is consumed once. `addresses` gives the logical
 * bytenr of each block in layout order: all leaves left to right, then each node level. The root is the
 * last block yielded.
 */
export function* serializeTree(
  items: Iterable<Item>,
  layout: TreeLayout,
  addresses: bigint[],
  nodesize: number,
  info: BlockHeaderInfo,
): Generator<SerializedBlock> {
  const header = (bytenr: bigint) => ({
    fsid: info.fsid, bytenr, flags: HEADER_FLAGS, chunk_tree_uuid: info.chunkTreeUuid,
    generation: info.generation, owner: info.owner,
  });
  const source = items[Symbol.iterator]();
  let addrIndex = 0;
  // first key and address of every block of the level below, for the key pointers of the next level
  let childKeys: Key[] = [];
  let childAddrs: bigint[] = [];
  for (const [s, e] of layout.levels[0]!) {
    const leafItems: Item[] = [];
    for (let i = s; i < e; i++) {
      const r = source.next();
      if (r.done) throw new RangeError(`tree ${info.owner}: ${i} items given, the layout needs ${e}`);
      leafItems.push(r.value);
    }
    const bytenr = addresses[addrIndex++]!;
    childKeys.push(leafItems[0]?.key ?? { objectid: 0n, type: 0, offset: 0n });
    childAddrs.push(bytenr);
    yield { bytenr, level: 0, bytes: buildLeaf(header(bytenr), leafItems, nodesize, info.csumType) };
  }
  if (!source.next().done) throw new RangeError(`tree ${info.owner}: more items given than the layout holds`);
  for (let level = 1; level < layout.levels.length; level++) {
    const firstKeys: Key[] = [];
    const addrs: bigint[] = [];
    for (const [s, e] of layout.levels[level]!) {
      const bytenr = addresses[addrIndex++]!;
      const ptrs = childKeys.slice(s, e).map((key, i) => ({ key, blockptr: childAddrs[s + i]!, generation: info.generation }));
      firstKeys.push(childKeys[s]!);
      addrs.push(bytenr);
      yield { bytenr, level, bytes: buildNode(header(bytenr), level, ptrs, nodesize, info.csumType) };
    }
    childKeys = firstKeys;
    childAddrs = addrs;
  }
}
