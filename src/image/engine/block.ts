import { BTRFS_BACKREF_REV_SHIFT, BTRFS_HEADER_FLAG_WRITTEN, BTRFS_MIXED_BACKREF_REV } from '../structs/constants.js';
import type { BtrfsKey } from '../structs/fs-items.js';
import { BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE, BTRFS_KEY_PTR_SIZE } from '../structs/tree-block.js';

/**
 * A decoded tree block (the engine's extent_buffer): header fields plus, for a leaf, keys and item
 * payloads, for a node, keys with child pointers and their generations. The engine edits these arrays
 * and encodes the block again when it is written (block-codec.ts); the on-disk layout (item data packed
 * down from the end of the block in item order) is what buildLeaf produces, as the kernel keeps it.
 *
 * Payload arrays are never changed in place: an edit replaces the array, so a payload handed out by a
 * lookup, or shared with the block a copy-on-write came from, stays what it was.
 */
export const HEADER_FLAGS = BTRFS_HEADER_FLAG_WRITTEN | (BTRFS_MIXED_BACKREF_REV << BTRFS_BACKREF_REV_SHIFT);

export class Block {
  keys: BtrfsKey[] = [];
  /** Leaf payloads, one per key (level 0). */
  data: Uint8Array[] = [];
  /** Child block addresses, one per key (level > 0). */
  ptrs: bigint[] = [];
  /** Generation the parent records for each child (level > 0). */
  ptrGens: bigint[] = [];
  /** Sum of item header + payload bytes (level 0). */
  used = 0;
  /** BlockStore's use counter at the last access. */
  lastUse = 0;
  /** Allocated in the running transaction (changed in place, no copy-on-write). */
  fresh = false;
  /** Changed since last written. */
  dirty = false;

  constructor(
    public bytenr: bigint,
    readonly level: number,
    public generation: bigint,
    public owner: bigint,
    public flags: bigint = HEADER_FLAGS,
  ) {}

  get nritems(): number {
    return this.keys.length;
  }

  /**
   * A copy with a new address and generation (btrfs_copy_root / __btrfs_cow_block's copy_extent_buffer).
   * Its header flags start afresh, as the kernel resets them: mixed backref revision, and no RELOC flag
   * even when the original was written by relocation (btrfs check counts the data references of a
   * RELOC-flagged leaf by its address, so a copy that kept the flag would contradict its keyed refs).
   */
  copyTo(bytenr: bigint, generation: bigint, owner: bigint): Block {
    const b = new Block(bytenr, this.level, generation, owner);
    b.keys = this.keys.slice();
    b.data = this.data.slice();
    b.ptrs = this.ptrs.slice();
    b.ptrGens = this.ptrGens.slice();
    b.used = this.used;
    return b;
  }

  // ---- leaf edits ----

  insertItem(slot: number, key: BtrfsKey, data: Uint8Array): void {
    // appends (a receive's new extents, checksums, extent items) without splice's result arrays
    if (slot === this.keys.length) {
      this.keys.push(key);
      this.data.push(data);
    } else {
      this.keys.splice(slot, 0, key);
      this.data.splice(slot, 0, data);
    }
    this.used += BTRFS_ITEM_SIZE + data.length;
  }

  setItemData(slot: number, data: Uint8Array): void {
    this.used += data.length - this.data[slot]!.length;
    this.data[slot] = data;
  }

  removeItems(slot: number, count: number): void {
    for (let i = slot; i < slot + count; i++) this.used -= BTRFS_ITEM_SIZE + this.data[i]!.length;
    this.keys.splice(slot, count);
    this.data.splice(slot, count);
  }

  /** Move items [from, nritems) to the front of `dst` (a leaf to the right of this one). */
  moveItemsRight(from: number, dst: Block): void {
    const keys = this.keys.splice(from);
    const data = this.data.splice(from);
    const bytes = leafBytes(data);
    this.used -= bytes;
    dst.keys.unshift(...keys);
    dst.data.unshift(...data);
    dst.used += bytes;
  }

  /** Move the first `count` items to the end of `dst` (a leaf to the left of this one). */
  moveItemsLeft(count: number, dst: Block): void {
    const keys = this.keys.splice(0, count);
    const data = this.data.splice(0, count);
    const bytes = leafBytes(data);
    this.used -= bytes;
    dst.keys.push(...keys);
    dst.data.push(...data);
    dst.used += bytes;
  }

  // ---- node edits ----

  insertPtr(slot: number, key: BtrfsKey, bytenr: bigint, generation: bigint): void {
    this.keys.splice(slot, 0, key);
    this.ptrs.splice(slot, 0, bytenr);
    this.ptrGens.splice(slot, 0, generation);
  }

  removePtr(slot: number): void {
    this.keys.splice(slot, 1);
    this.ptrs.splice(slot, 1);
    this.ptrGens.splice(slot, 1);
  }

  /** Move pointers [from, nritems) to the front of `dst`. */
  movePtrsRight(from: number, dst: Block): void {
    dst.keys.unshift(...this.keys.splice(from));
    dst.ptrs.unshift(...this.ptrs.splice(from));
    dst.ptrGens.unshift(...this.ptrGens.splice(from));
  }

  /** Move every pointer to the end of `dst`. */
  movePtrsLeft(dst: Block): void {
    dst.keys.push(...this.keys.splice(0));
    dst.ptrs.push(...this.ptrs.splice(0));
    dst.ptrGens.push(...this.ptrGens.splice(0));
  }
}

/** Bytes a leaf offers to items (header + payload each). */
export function leafRoom(nodesize: number): number {
  return nodesize - BTRFS_HEADER_SIZE;
}

/** BTRFS_NODEPTRS_PER_BLOCK. */
export function nodePtrs(nodesize: number): number {
  return Math.floor((nodesize - BTRFS_HEADER_SIZE) / BTRFS_KEY_PTR_SIZE);
}

/**
 * The slot of `key` in sorted `keys` when it is there, else -(1 + the slot it would go to) — a number, not
 * an object: every tree search makes one per level, ~100k per receive of a compressed stream.
 */
export function binarySearch(keys: BtrfsKey[], key: BtrfsKey): number {
  let lo = 0;
  let hi = keys.length;
  // the last key first: a receive appends (new inodes, a file's next extent, extent and csum items at
  // rising addresses) or changes the last item far more often than anything else, and the bigint
  // compares of the halving steps are most of a search's cost
  if (hi > 4) {
    const k = keys[hi - 1]!;
    const c = k.objectid !== key.objectid ? (k.objectid < key.objectid ? -1 : 1)
      : k.type !== key.type ? (k.type < key.type ? -1 : 1)
      : k.offset !== key.offset ? (k.offset < key.offset ? -1 : 1) : 0;
    if (c === 0) return hi - 1;
    if (c < 0) return -1 - hi;
    hi--;
  }
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const k = keys[mid]!;
    const c = k.objectid !== key.objectid ? (k.objectid < key.objectid ? -1 : 1)
      : k.type !== key.type ? (k.type < key.type ? -1 : 1)
      : k.offset !== key.offset ? (k.offset < key.offset ? -1 : 1) : 0;
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1 - lo;
}

/** Leaf space taken by items with these payloads: one item header each plus the data. */
function leafBytes(data: Uint8Array[]): number {
  let bytes = 0;
  for (const d of data) bytes += BTRFS_ITEM_SIZE + d.length;
  return bytes;
}
