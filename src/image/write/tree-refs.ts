import { ImageError } from '../../errors.js';
import {
  U64_MAX, BTRFS_BLOCK_FLAG_FULL_BACKREF, BTRFS_EXTENT_FLAG_TREE_BLOCK, BTRFS_EXTENT_ITEM_KEY,
  BTRFS_METADATA_ITEM_KEY, BTRFS_SHARED_BLOCK_REF_KEY, BTRFS_TREE_BLOCK_REF_KEY,
} from '../structs/constants.js';
import type { BtrfsKey } from '../structs/fs-items.js';
import { type BtrfsExtentInlineRef, decodeExtentItem } from '../structs/tree-items.js';
import type { TreeBlockItemCodec } from './tree-block-item.js';
import type { TreeHandle } from './tree-state.js';

/**
 * Reference counts and back references of the copy-on-write trees' blocks, kept in the extent tree as
 * the kernel keeps them: a head item per block (a skinny METADATA_ITEM, or a non-skinny EXTENT_ITEM on
 * images without skinny-metadata: tree-block-item.ts), references by tree (TREE_BLOCK_REF, root id)
 * or, for blocks with FULL_BACKREF, by parent block (SHARED_BLOCK_REF). Written in one of two forms:
 * up to INLINE_MAX references inline in the head item, in the kernel's order, as the kernel writes them
 * (a snapshot adds a reference to each child of its root and of every shared node it copies: one item
 * changed in place each); more as keyed items, which need no order. Items the kernel wrote in other
 * forms (some inline, some keyed) are read as they are and rewritten in these forms when they change.
 */
export interface BlockRefs {
  level: number;
  generation: bigint;
  flags: bigint;
  /** Referencing root ids (TREE_BLOCK_REF). */
  roots: Set<bigint>;
  /** Referencing parent blocks (SHARED_BLOCK_REF). */
  parents: Set<bigint>;
  /** Non-skinny images: the tree_block_info key of the block's item, kept when it is rewritten. */
  infoKey?: BtrfsKey;
}

export function totalRefs(r: BlockRefs): number {
  return r.roots.size + r.parents.size;
}

export class TreeBlockRefTable {
  /**
   * Changes not yet in the extent tree (the kernel's delayed refs), by block: the block's whole new
   * reference state, none left meaning its items go. They are run at commit (run), because changing
   * the extent tree allocates and frees its own blocks, whose references land here again.
   */
  private readonly pending = new Map<bigint, BlockRefs>();
  /**
   * Keys of the extent tree items of blocks read or written in this run (read: what the walk found;
   * write: what it left), so that the write of a block's new state changes only the items that differ
   * without looking for them again. Only this table changes tree blocks' items; forgotten after a run.
   */
  private readonly onDisk = new Map<bigint, BtrfsKey[]>();

  /** `headItem`: the head item's key and form, METADATA_ITEM or non-skinny EXTENT_ITEM (tree-block-item.ts). */
  constructor(private readonly extent: () => TreeHandle, private readonly headItem: TreeBlockItemCodec) {}

  get pendingCount(): number {
    return this.pending.size;
  }

  get(bytenr: bigint): BlockRefs | undefined {
    const p = this.pending.get(bytenr);
    if (p) return totalRefs(p) ? { ...p, roots: new Set(p.roots), parents: new Set(p.parents) } : undefined;
    return this.read(bytenr);
  }

  private read(bytenr: bigint): BlockRefs | undefined {
    // head and keyed references in one walk: they sit side by side, (bytenr, EXTENT_ITEM | METADATA_ITEM)
    // then (bytenr, TREE_BLOCK_REF, root)... and (bytenr, SHARED_BLOCK_REF, parent)...
    const items = this.extent().range(refsMin(bytenr), refsMax(bytenr));
    const head = items[0];
    if (!head || (head.key.type !== BTRFS_EXTENT_ITEM_KEY && head.key.type !== BTRFS_METADATA_ITEM_KEY)) return undefined;
    const ei = decodeExtentItem(head.data, head.key.type);
    if (!(ei.flags & BTRFS_EXTENT_FLAG_TREE_BLOCK)) return undefined;
    const level = head.key.type === BTRFS_METADATA_ITEM_KEY ? Number(head.key.offset) : ei.tree_block_info?.level ?? 0;
    const r: BlockRefs = { level, generation: ei.generation, flags: ei.flags, roots: new Set(), parents: new Set(), infoKey: ei.tree_block_info?.key };
    for (const ref of ei.inline_refs) {
      if (ref.type === BTRFS_TREE_BLOCK_REF_KEY) r.roots.add(ref.root);
      else if (ref.type === BTRFS_SHARED_BLOCK_REF_KEY) r.parents.add(ref.parent);
    }
    for (let i = 1; i < items.length; i++) {
      const it = items[i]!;
      if (it.key.type === BTRFS_TREE_BLOCK_REF_KEY) r.roots.add(it.key.offset);
      else if (it.key.type === BTRFS_SHARED_BLOCK_REF_KEY) r.parents.add(it.key.offset);
    }
    this.onDisk.set(bytenr, items.map((it) => it.key));
    return r;
  }

  /** The block's new reference state, written by the next run; none left deletes its items. */
  put(bytenr: bigint, r: BlockRefs): void {
    this.pending.set(bytenr, r);
  }

  /**
   * Write the queued changes into the extent tree until none is left (each write may copy extent tree
   * blocks, which queues theirs). Returns whether there was anything to run.
   */
  run(): boolean {
    if (!this.pending.size) return false;
    while (this.pending.size) {
      const batch = [...this.pending].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      this.pending.clear();
      for (const [bytenr, r] of batch) {
        // queued again while this batch ran: the newer state wins
        if (this.pending.has(bytenr)) continue;
        this.write(bytenr, r);
      }
    }
    this.onDisk.clear();
    return true;
  }

  /** Queued changes are dropped (the transaction is abandoned). */
  clear(): void {
    this.pending.clear();
    this.onDisk.clear();
  }

  private write(bytenr: bigint, r: BlockRefs): void {
    const t = this.extent();
    const old = this.onDisk.get(bytenr) ?? t.range(refsMin(bytenr), refsMax(bytenr)).map((it) => it.key);
    const items = this.itemsOf(bytenr, r);
    // items that stay keep their place (a keyed reference, payload-less, is left as it is; the head is
    // replaced in its slot), the others go: fewer changes to the extent tree than all out, all in
    const next = new Set(items.map((it) => keyString(it.key)));
    const had = new Set<string>();
    for (const k of old) {
      const ks = keyString(k);
      if (next.has(ks)) had.add(ks);
      else t.delete(k);
    }
    for (const it of items) if (it.data.length || !had.has(keyString(it.key))) t.put(it.key, it.data);
    this.onDisk.set(bytenr, items.map((it) => it.key));
  }

  /** The extent tree items of a block with references `r`, in key order (none when nothing references it). */
  private itemsOf(bytenr: bigint, r: BlockRefs): { key: BtrfsKey; data: Uint8Array }[] {
    const n = totalRefs(r);
    if (n === 0) return [];
    const head = { refs: BigInt(n), generation: r.generation, flags: r.flags | BTRFS_EXTENT_FLAG_TREE_BLOCK, level: r.level, infoKey: r.infoKey };
    if (n <= INLINE_MAX) {
      // the kernel's order (lookup_inline_extent_backref inserts so, the tree checker wants it): by type,
      // then by decreasing root or parent
      const inline: BtrfsExtentInlineRef[] = [];
      for (const root of [...r.roots].sort(descending)) inline.push({ type: BTRFS_TREE_BLOCK_REF_KEY, root });
      for (const parent of [...r.parents].sort(descending)) inline.push({ type: BTRFS_SHARED_BLOCK_REF_KEY, parent });
      return [this.headItem(bytenr, { ...head, inline_refs: inline })];
    }
    const out = [this.headItem(bytenr, { ...head, inline_refs: [] })];
    for (const root of [...r.roots].sort(ascending)) out.push({ key: { objectid: bytenr, type: BTRFS_TREE_BLOCK_REF_KEY, offset: root }, data: NONE });
    for (const parent of [...r.parents].sort(ascending)) out.push({ key: { objectid: bytenr, type: BTRFS_SHARED_BLOCK_REF_KEY, offset: parent }, data: NONE });
    return out;
  }

  /**
   * A new block of tree `root` (btrfs_alloc_tree_block's reference). `check`: look for an existing
   * item first (not while the extent tree itself is being changed).
   */
  created(bytenr: bigint, level: number, generation: bigint, root: bigint, check = true): void {
    if (check && this.get(bytenr)) throw new ImageError('IMAGE_EXTENT_EXISTS', `tree block ${bytenr} already has an extent item`, { offset: bytenr });
    this.put(bytenr, { level, generation, flags: 0n, roots: new Set([root]), parents: new Set() });
  }

  /** One more reference: by tree `ref.root`, or by parent block `ref.parent`. */
  add(bytenr: bigint, ref: { root: bigint } | { parent: bigint }): void {
    const r = this.must(bytenr);
    const set = 'root' in ref ? r.roots : r.parents;
    const v = 'root' in ref ? ref.root : ref.parent;
    if (set.has(v)) throw new ImageError('IMAGE_REF_EXISTS', `tree block ${bytenr} already has the reference ${'root' in ref ? 'by tree' : 'by block'} ${v}`, { offset: bytenr });
    set.add(v);
    this.put(bytenr, r);
  }

  /** Drop a reference; returns the references left (0: the block is free). */
  drop(bytenr: bigint, ref: { root: bigint } | { parent: bigint }): number {
    const r = this.must(bytenr);
    const had = 'root' in ref ? r.roots.delete(ref.root) : r.parents.delete(ref.parent);
    if (!had) {
      throw new ImageError('IMAGE_NO_REF', `tree block ${bytenr} has no reference ${'root' in ref ? `by tree ${ref.root}` : `by block ${ref.parent}`} to drop`, { offset: bytenr });
    }
    this.put(bytenr, r);
    return totalRefs(r);
  }

  /** The only reference, by its tree, of a block no other tree can share is gone (nothing is read). */
  dropOnly(bytenr: bigint, level: number): void {
    this.pending.set(bytenr, { level, generation: 0n, flags: 0n, roots: new Set(), parents: new Set() });
  }

  setFullBackref(bytenr: bigint): void {
    const r = this.must(bytenr);
    r.flags |= BTRFS_BLOCK_FLAG_FULL_BACKREF;
    this.put(bytenr, r);
  }

  must(bytenr: bigint): BlockRefs {
    const r = this.get(bytenr);
    if (!r) throw new ImageError('IMAGE_NO_EXTENT', `tree block ${bytenr} has no extent item`, { offset: bytenr });
    return r;
  }
}

const NONE = new Uint8Array(0);
/**
 * References kept inline in the head item, up to this many (each 9 bytes; the kernel stops at an item of
 * BTRFS_MAX_EXTENT_ITEM_SIZE, ~1 KiB for 16 KiB nodes, or when keyed ones exist): a block shared by a
 * snapshot or two changes one item in place. More are keyed items, which need no order among themselves.
 */
export const INLINE_MAX = 8;

const ascending = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);
const descending = (a: bigint, b: bigint): number => ascending(b, a);

function refsMin(bytenr: bigint): BtrfsKey {
  return { objectid: bytenr, type: BTRFS_EXTENT_ITEM_KEY, offset: 0n };
}
function refsMax(bytenr: bigint): BtrfsKey {
  return { objectid: bytenr, type: BTRFS_SHARED_BLOCK_REF_KEY, offset: U64_MAX };
}
function keyString(k: BtrfsKey): string {
  return `${k.type}:${k.offset}`;
}
