import { BTRFS_MAX_LEVEL, type BtrfsKey, compareKeys, type LeafItem, type TreeBlock } from '../structs.js';
import { checkTreeCopy, type Expect, expectMismatch, treeBlockError } from './block-check.js';
import type { ChunkMap } from './chunk-map.js';
import { compareLeafKey, diskKey, leafItem, leafSlotLE } from './leaf-keys.js';
import type { TreeOverlay } from './overlay.js';
import type { ImageSource } from './source.js';

/** Where a tree starts, and what its root block must look like. */
export interface TreeRoot {
  /** Tree id, for messages and owner checks. */
  id: bigint;
  bytenr: bigint;
  level: number;
  generation: bigint;
}

const CACHE_BLOCKS = 512;

/** diskKey's bytes for a comparison made and finished without an await between. */
const scratchKey = new DataView(new ArrayBuffer(17));

/**
 * Slot of the last entry keyed <= `key` in a block's items or pointers (key order is checked when a block
 * is parsed), -1 when every key is greater: a binary search, as the kernel's btrfs_bin_search.
 */
export function slotLE(entries: readonly { key: BtrfsKey }[], key: BtrfsKey): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(entries[mid]!.key, key) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * Reads and verifies tree blocks, and searches/iterates trees. Every block is checked before use:
 * checksum, bytenr, fsid, level, generation, first key vs the parent's pointer, owner. On DUP chunks a
 * copy that fails is retried from the other copy, like the kernel's read repair (without the repair).
 */
export class TreeReader {
  private cache = new Map<bigint, TreeBlock>();
  /**
   * The leaf each tree's last search ended in (by root block), with the keys a search would route to it:
   * [first, bound). A send looks keys up in inode order, mostly in the leaf of the one before: the descent
   * from the root (a binary search of key objects and a check of each block against its pointer per level)
   * is then skipped. One leaf per tree, kept past the block cache's eviction.
   */
  private readonly lastLeaf = new Map<bigint, { generation: bigint; leaf: TreeBlock; first: BtrfsKey; bound: BtrfsKey | undefined }>();
  /** In-memory changes shown over the on-disk trees (the replayed tree log), when there are any. */
  overlay: TreeOverlay | undefined;

  constructor(
    private readonly src: ImageSource,
    private readonly chunks: ChunkMap,
    private readonly nodesize: number,
    private readonly fsid: Uint8Array,
    /** The superblock's csum_type, already loaded (loadCsum). */
    private readonly csumType: number,
    /** Whether `owner` may legitimately own blocks of tree `treeId` (snapshots share blocks). */
    private readonly ownerOk: (treeId: bigint, owner: bigint) => boolean = (t, o) => t === o,
  ) {}

  async readBlock(bytenr: bigint, exp: Expect): Promise<TreeBlock> {
    return this.cached(bytenr, exp) ?? this.load(bytenr, exp);
  }

  /**
   * The block from the cache, checked against `exp`, or undefined when it is not there: nearly every
   * block a search or walk steps through is a hit (a send: ~5,700 of ~5,900), and taken this way a
   * hit costs no promise and no await.
   */
  cached(bytenr: bigint, exp: Expect): TreeBlock | undefined {
    const hit = this.cache.get(bytenr);
    if (hit) {
      this.cache.delete(bytenr);
      this.cache.set(bytenr, hit);
      const why = expectMismatch(hit, exp, this.ownerOk);
      if (why) this.fail(bytenr, exp.owner, why);
    }
    return hit;
  }

  private async load(bytenr: bigint, exp: Expect): Promise<TreeBlock> {
    if (bytenr % 4096n !== 0n) this.fail(bytenr, exp.owner, 'tree block address is not sector aligned');
    const copies = this.chunks.map(bytenr, this.nodesize, 'tree block');
    const problems: string[] = [];
    for (const phys of copies) {
      const r = checkTreeCopy(await this.src.read(phys, this.nodesize), this.nodesize, bytenr, exp, this.fsid, this.csumType, this.ownerOk);
      if ('tb' in r) {
        this.cache.set(bytenr, r.tb);
        if (this.cache.size > CACHE_BLOCKS) this.cache.delete(this.cache.keys().next().value as bigint);
        return r.tb;
      }
      problems.push(copies.length > 1 ? `copy at physical ${phys}: ${r.why}` : r.why);
    }
    return this.fail(bytenr, exp.owner, problems.join('; '));
  }

  private fail(bytenr: bigint, tree: bigint, why: string): never {
    throw treeBlockError(bytenr, tree, why);
  }

  private rootBlock(root: TreeRoot): TreeBlock | Promise<TreeBlock> {
    if (root.level >= BTRFS_MAX_LEVEL) this.fail(root.bytenr, root.id, `root level ${root.level} too high`);
    const exp = { level: root.level, generation: root.generation, owner: root.id };
    return this.cached(root.bytenr, exp) ?? this.load(root.bytenr, exp);
  }

  /**
   * Items with from <= key <= to, in key order. Children are visited once per iteration (a block seen
   * twice means a corrupt, cyclic or cross-linked tree), and levels must step down by one, so a damaged
   * tree ends in an ImageError rather than a loop.
   */
  iterate(root: TreeRoot, from: BtrfsKey, to: BtrfsKey): AsyncGenerator<LeafItem> {
    const base = this.iterateDisk(root, from, to);
    return this.overlay?.has(root.id) ? this.overlay.merge(root.id, base, from, to) : base;
  }

  private async *iterateDisk(root: TreeRoot, from: BtrfsKey, to: BtrfsKey): AsyncGenerator<LeafItem> {
    const visited = new Set<bigint>();
    // One generator with an explicit path (not one nested generator per level: each level of yield*
    // costs every item another promise round trip); the start is found by binary search at each level.
    const path: { tb: TreeBlock; i: number }[] = [];
    // the bounds as disk bytes, compared in the leaves' bytes (an item object only for what is yielded)
    const fromKey = diskKey(from);
    const toKey = diskKey(to);
    const enter = (tb: TreeBlock): void => {
      if (tb.header.level === 0) {
        // in a leaf the first item >= from
        const at = leafSlotLE(tb, fromKey);
        path.push({ tb, i: at >= 0 && compareLeafKey(tb, at, fromKey) === 0 ? at : at + 1 });
      } else {
        // in a node the child that may hold `from`
        path.push({ tb, i: Math.max(slotLE(tb.ptrs, from), 0) });
      }
    };
    const r = this.rootBlock(root);
    enter(r instanceof Promise ? await r : r);
    while (path.length > 0) {
      const top = path[path.length - 1]!;
      const tb = top.tb;
      if (tb.header.level === 0) {
        for (; top.i < tb.header.nritems; top.i++) {
          if (compareLeafKey(tb, top.i, toKey) > 0) return;
          yield leafItem(tb, top.i);
        }
        path.pop();
        continue;
      }
      if (top.i >= tb.ptrs.length) {
        path.pop();
        continue;
      }
      const p = tb.ptrs[top.i++]!;
      if (compareKeys(p.key, to) > 0) return;
      if (visited.has(p.blockptr)) this.fail(p.blockptr, root.id, `referenced twice from tree ${root.id} (block ${tb.header.bytenr})`);
      visited.add(p.blockptr);
      const exp = { level: tb.header.level - 1, generation: p.generation, firstKey: p.key, owner: root.id };
      enter(this.cached(p.blockptr, exp) ?? await this.load(p.blockptr, exp)); // past the first child of a level its search finds slot 0
    }
  }

  /**
   * Items with from <= key <= to, as iterate gives them, for a range of a few items — an inode's references,
   * one extent's back references, ~700 walks in an incremental send: an array of the items of the leaf a
   * search for `from` ends in when that leaf holds the whole range (found without a descent where it is the
   * last one searched, leafDisk; no generator), else iterate's walk.
   */
  async shortRange(root: TreeRoot, from: BtrfsKey, to: BtrfsKey): Promise<LeafItem[] | AsyncGenerator<LeafItem>> {
    const at = this.overlay?.has(root.id) ? undefined : await this.leafDisk(root, from);
    if (!at) return this.iterate(root, from, to);
    const tb = at.leaf;
    const fromKey = diskKey(from, scratchKey);
    let i = leafSlotLE(tb, fromKey);
    if (i < 0 || compareLeafKey(tb, i, fromKey) !== 0) i++;
    const toKey = diskKey(to, scratchKey);
    const out: LeafItem[] = [];
    for (; i < tb.header.nritems; i++) {
      if (compareLeafKey(tb, i, toKey) > 0) return out;
      out.push(leafItem(tb, i));
    }
    // past the leaf's last item: the range goes on where the next leaf starts at or before `to`
    return at.bound === undefined || compareKeys(at.bound, to) > 0 ? out : this.iterate(root, from, to);
  }

  /** The item with the greatest key <= `key`, if any (overlay included). */
  async lookupLE(root: TreeRoot, key: BtrfsKey): Promise<LeafItem | undefined> {
    const ov = this.overlay;
    if (!ov?.has(root.id)) return this.lookupDiskLE(root, key);
    // the greatest on-disk key the overlay did not delete, against the greatest key the overlay added
    let disk = await this.lookupDiskLE(root, key);
    while (disk && ov.get(root.id, disk.key) === null) {
      const prev = keyBefore(disk.key);
      disk = prev ? await this.lookupDiskLE(root, prev) : undefined;
    }
    if (disk) {
      const o = ov.get(root.id, disk.key);
      if (o) disk = { key: disk.key, data: o };
    }
    const added = ov.range(root.id, { objectid: 0n, type: 0, offset: 0n }, key).filter((e) => e.data).pop();
    if (added && (!disk || compareKeys(added.key, disk.key) > 0)) return { key: added.key, data: added.data! };
    return disk;
  }

  private async lookupDiskLE(root: TreeRoot, key: BtrfsKey): Promise<LeafItem | undefined> {
    const tb = (await this.leafDisk(root, key))?.leaf;
    const i = tb ? leafSlotLE(tb, diskKey(key, scratchKey)) : -1;
    return i >= 0 ? leafItem(tb!, i) : undefined;
  }

  /**
   * The on-disk leaf a search for `key` ends in (the one that holds the greatest key <= `key`, if any leaf
   * does), and `bound`: the first key of the next leaf as the nodes above point to it (undefined for the
   * tree's last leaf) — every item keyed below it and from the leaf's first key on is in this leaf. For a
   * caller that looks up many nearby keys. Undefined when the tree has a log-replay overlay or every key
   * is greater.
   */
  async leafLE(root: TreeRoot, key: BtrfsKey): Promise<{ leaf: TreeBlock; bound: BtrfsKey | undefined } | undefined> {
    return this.overlay?.has(root.id) ? undefined : this.leafDisk(root, key);
  }

  private async leafDisk(root: TreeRoot, key: BtrfsKey): Promise<{ leaf: TreeBlock; bound: BtrfsKey | undefined } | undefined> {
    const last = this.lastLeaf.get(root.bytenr);
    if (last && last.generation === root.generation && compareKeys(last.first, key) <= 0 && (last.bound === undefined || compareKeys(key, last.bound) < 0)) {
      return { leaf: last.leaf, bound: last.bound };
    }
    const r = this.rootBlock(root);
    let tb = r instanceof Promise ? await r : r;
    let bound: BtrfsKey | undefined;
    let first: BtrfsKey | undefined;
    while (tb.header.level > 0) {
      const i = slotLE(tb.ptrs, key);
      if (i < 0) return undefined;
      const p = tb.ptrs[i]!;
      // a lower level's next pointer is nearer; each child's first key is checked against its pointer
      if (i + 1 < tb.ptrs.length) bound = tb.ptrs[i + 1]!.key;
      const exp = { level: tb.header.level - 1, generation: p.generation, firstKey: p.key, owner: root.id };
      tb = this.cached(p.blockptr, exp) ?? await this.load(p.blockptr, exp);
      first = p.key;
    }
    // a deeper level's pointers lie within a higher one's: its key and its next pointer's bound the leaf's keys
    if (first) this.lastLeaf.set(root.bytenr, { generation: root.generation, leaf: tb, first, bound });
    return { leaf: tb, bound };
  }

  /** The item with exactly this key, if any. */
  async lookup(root: TreeRoot, key: BtrfsKey): Promise<LeafItem | undefined> {
    const it = await this.lookupLE(root, key);
    return it && compareKeys(it.key, key) === 0 ? it : undefined;
  }
}

/** The greatest key below `k`, or undefined for the smallest key. */
function keyBefore(k: BtrfsKey): BtrfsKey | undefined {
  const U64_MAX = (1n << 64n) - 1n;
  if (k.offset > 0n) return { ...k, offset: k.offset - 1n };
  if (k.type > 0) return { objectid: k.objectid, type: k.type - 1, offset: U64_MAX };
  if (k.objectid > 0n) return { objectid: k.objectid - 1n, type: 255, offset: U64_MAX };
  return undefined;
}
