import type { ImageReader } from '../image/read/image.js';
import { compareLeafKeys, leafData, leafKey, leafSize, sameLeafData, sameLeafRuns } from '../image/read/leaf-keys.js';
import type { TreeRoot } from '../image/read/tree.js';
import { type BtrfsKey, compareKeys, type TreeBlock } from '../image/structs.js';
import { sameBytes } from '../util/bytes.js';
import { nativeAddon } from '../util/native-addon.js';

/** The native addon's leaf merge (native/leaf-scan.c), where it has one. */
const leafMerge = nativeAddon?.leafMerge;
/** Differing items the native merge lists per call. */
const MERGE_BATCH = 64;

/** One item that differs between the sent tree (left) and the parent (right): only left = new, only right = deleted. */
export interface ItemChange {
  key: BtrfsKey;
  left?: Uint8Array;
  right?: Uint8Array;
}

type Entry = { kind: 'item'; key: BtrfsKey; data: Uint8Array } | { kind: 'node'; key: BtrfsKey; bytenr: bigint; generation: bigint; level: number };

/**
 * A position in one tree, in key order: the next thing is either an item or a whole child block not yet
 * opened. Opening only what differs is what lets two trees that share blocks be compared in time
 * proportional to what changed (the kernel's btrfs_compare_trees).
 */
class Cursor {
  private readonly stack: { tb: TreeBlock; i: number }[] = [];
  private rootEntry: Entry | undefined;

  constructor(private readonly img: ImageReader, private readonly root: TreeRoot) {}

  async start(): Promise<void> {
    const r = this.root;
    this.rootEntry = { kind: 'node', key: { objectid: 0n, type: 0, offset: 0n }, bytenr: r.bytenr, generation: r.generation, level: r.level };
  }

  /** What peek() gave, until the cursor moves: a step that moves one side only does not rebuild the other's. */
  private seen: Entry | undefined;

  peek(): Entry | undefined {
    return (this.seen ??= this.entry());
  }

  private entry(): Entry | undefined {
    if (this.rootEntry) return this.rootEntry;
    const top = this.stack[this.stack.length - 1];
    if (!top) return undefined;
    const tb = top.tb;
    if (tb.header.level === 0) return { kind: 'item', key: leafKey(tb, top.i), data: leafData(tb, top.i) };
    const p = tb.ptrs[top.i]!;
    return { kind: 'node', key: p.key, bytenr: p.blockptr, generation: p.generation, level: tb.header.level - 1 };
  }

  /** Opens the node at the cursor: its first entry becomes the next. */
  async descend(): Promise<void> {
    const e = this.peek();
    if (!e || e.kind !== 'node') return;
    this.seen = undefined;
    const root = this.rootEntry !== undefined;
    const exp = root
      ? { level: e.level, generation: e.generation, owner: this.root.id }
      : { level: e.level, generation: e.generation, firstKey: e.key, owner: this.root.id };
    const tb = await this.img.trees.readBlock(e.bytenr, exp);
    if (root) this.rootEntry = undefined;
    else this.stack[this.stack.length - 1]!.i++;
    // the parent's index already points past this child: popping returns to its next sibling
    if ((tb.header.level === 0 ? tb.header.nritems : tb.ptrs.length) > 0) this.stack.push({ tb, i: 0 });
    else this.pop();
  }

  /** The leaf the cursor is in and the slot of its next item, when the next entry is an item. */
  leaf(): { tb: TreeBlock; i: number } | undefined {
    if (this.rootEntry) return undefined;
    const top = this.stack[this.stack.length - 1];
    return top && top.tb.header.level === 0 ? top : undefined;
  }

  /** Moves past the items leaf() gave up to `i` (the caller stepped through them itself). */
  skipTo(i: number): void {
    this.seen = undefined;
    this.stack[this.stack.length - 1]!.i = i;
    this.pop();
  }

  /** Skips the entry at the cursor (an item, or a whole node unopened). */
  advance(): void {
    this.seen = undefined;
    if (this.rootEntry) {
      this.rootEntry = undefined;
      return;
    }
    this.stack[this.stack.length - 1]!.i++;
    this.pop();
  }

  private pop(): void {
    for (;;) {
      const top = this.stack[this.stack.length - 1];
      if (!top) return;
      const n = top.tb.header.level === 0 ? top.tb.header.nritems : top.tb.ptrs.length;
      if (top.i < n) return;
      this.stack.pop();
    }
  }
}


/**
 * The items that differ between `left` (the subvolume sent) and `right` (the parent), in key order. Blocks
 * both trees reference at the same place are skipped unread: a snapshot and its source share every block
 * neither has changed since. Trees with log-replay changes over them are compared item by item.
 */
export async function* compareTrees(img: ImageReader, left: TreeRoot, right: TreeRoot): AsyncGenerator<ItemChange> {
  if (img.trees.overlay?.has(left.id) || img.trees.overlay?.has(right.id)) {
    yield* compareItems(img, left, right);
    return;
  }
  const l = new Cursor(img, left);
  const r = new Cursor(img, right);
  await l.start();
  await r.start();
  for (;;) {
    const la = l.leaf();
    const lb = la && r.leaf();
    if (lb) {
      // both sides in a leaf (an item pair at every step of a leaf that differs: most of the walk's
      // steps): their items merged here, without an entry object per item and side
      yield* mergeLeaves(la!, lb, l, r);
      continue;
    }
    const a = l.peek();
    const b = r.peek();
    if (!a && !b) return;
    if (!a || !b) {
      const c = a ? l : r;
      const e = (a ?? b)!;
      if (e.kind === 'node') await c.descend();
      else {
        yield a ? { key: e.key, left: e.data } : { key: e.key, right: e.data };
        c.advance();
      }
      continue;
    }
    if (a.kind === 'node' && b.kind === 'node' && a.bytenr === b.bytenr && a.generation === b.generation && compareKeys(a.key, b.key) === 0) {
      l.advance();
      r.advance();
      continue;
    }
    const cmp = compareKeys(a.key, b.key);
    if (a.kind === 'item' && b.kind === 'item') {
      if (cmp < 0) {
        yield { key: a.key, left: a.data };
        l.advance();
      } else if (cmp > 0) {
        yield { key: b.key, right: b.data };
        r.advance();
      } else {
        if (!sameBytes(a.data, b.data)) yield { key: a.key, left: a.data, right: b.data };
        l.advance();
        r.advance();
      }
      continue;
    }
    // An item before the other side's next block cannot be in it: it is only on its side.
    if (a.kind === 'item' && cmp < 0) {
      yield { key: a.key, left: a.data };
      l.advance();
    } else if (b.kind === 'item' && cmp > 0) {
      yield { key: b.key, right: b.data };
      r.advance();
    } else if (a.kind === 'node' && (b.kind === 'item' || cmp < 0 || (cmp === 0 && a.level >= b.level))) {
      await l.descend();
    } else {
      await r.descend();
    }
  }
}

/** What a kept change may cost in memory, item bytes and object headers (TreeDiff). */
const KEEP_BYTES = 8 << 20;
const CHANGE_OVERHEAD = 256;

/**
 * compareTrees for a caller that walks the changes twice (an incremental send: once for the names, once
 * for the content). The first walk keeps a copy of each change while they fit in KEEP_BYTES, and the
 * second replays them instead of comparing the trees again — a changed leaf's every item is compared on
 * each walk, most of it equal. Past the bound the second walk compares the trees again.
 */
export class TreeDiff {
  private kept: ItemChange[] | undefined = [];
  private bytes = 0;
  private complete = false;

  constructor(
    private readonly img: ImageReader, private readonly left: TreeRoot, private readonly right: TreeRoot,
    private readonly keepBytes = KEEP_BYTES,
  ) {}

  async *first(): AsyncGenerator<ItemChange> {
    for await (const ch of compareTrees(this.img, this.left, this.right)) {
      if (this.kept) {
        this.bytes += CHANGE_OVERHEAD + (ch.left?.length ?? 0) + (ch.right?.length ?? 0);
        if (this.bytes > this.keepBytes) this.kept = undefined;
        // copies: views would keep whole tree blocks alive
        else this.kept.push({ key: ch.key, ...(ch.left ? { left: ch.left.slice() } : {}), ...(ch.right ? { right: ch.right.slice() } : {}) });
      }
      yield ch;
    }
    this.complete = true;
  }

  /** The changes again: the kept copies when the first walk ended within the bound, else a new comparison. */
  again(): AsyncIterable<ItemChange> | Iterable<ItemChange> {
    return this.complete && this.kept ? this.kept : compareTrees(this.img, this.left, this.right);
  }
}

/**
 * The items of two leaves the cursors are in, merged from their slots until either leaf ends (the
 * item-against-item steps of compareTrees); the cursors are then moved past what was merged. Keys and
 * data are compared in the blocks' bytes: an item is made only for a change.
 */
function* mergeLeaves(a: { tb: TreeBlock; i: number }, b: { tb: TreeBlock; i: number }, l: Cursor, r: Cursor): Generator<ItemChange> {
  const x = a.tb;
  const y = b.tb;
  let i = a.i;
  let j = b.i;
  if (leafMerge) {
    // in C: only the differing items' slots come back (-1 for a side without the item). Should it refuse
    // (a slot outside its block, which parseTreeBlock rules out), the loop below goes on from where it is.
    const out = new Int32Array(2 + 2 * MERGE_BATCH);
    for (let n; i < x.header.nritems && j < y.header.nritems && (n = leafMerge(x.raw, i, x.header.nritems, y.raw, j, y.header.nritems, out)) >= 0;) {
      i = out[0]!;
      j = out[1]!;
      for (let k = 2; k < 2 + 2 * n; k += 2) {
        const p = out[k]!;
        const q = out[k + 1]!;
        if (q < 0) yield { key: leafKey(x, p), left: leafData(x, p) };
        else if (p < 0) yield { key: leafKey(y, q), right: leafData(y, q) };
        else yield { key: leafKey(x, p), left: leafData(x, p), right: leafData(y, q) };
      }
    }
  }
  while (i < x.header.nritems && j < y.header.nritems) {
    const cmp = compareLeafKeys(x, i, y, j);
    if (cmp < 0) {
      yield { key: leafKey(x, i), left: leafData(x, i) };
      i++;
    } else if (cmp > 0) {
      yield { key: leafKey(y, j), right: leafData(y, j) };
      j++;
    } else {
      // the items from here with the same keys and sizes on both sides (up to RUN): their data compared
      // in one piece, and item by item only when that differs — most items of two leaves that differ
      // are equal, and each compare call has a fixed cost well above a short item's bytes
      let n = 0;
      while (n < RUN && i + n < x.header.nritems && j + n < y.header.nritems && leafSize(x, i + n) === leafSize(y, j + n) && (n === 0 || compareLeafKeys(x, i + n, y, j + n) === 0)) n++;
      if (n > 1 && sameLeafRuns(x, i, y, j, n)) {
        i += n;
        j += n;
        continue;
      }
      // item by item: the first pair (sizes that differ: n = 0), or each pair of a run that differs
      for (let e = Math.max(n, 1); e > 0; e--, i++, j++) {
        if (!sameLeafData(x, i, y, j)) yield { key: leafKey(x, i), left: leafData(x, i), right: leafData(y, j) };
      }
    }
  }
  l.skipTo(i);
  r.skipTo(j);
}

/** Items compared at once by mergeLeaves when their keys and sizes match. */
const RUN = 16;

/** The same comparison item by item, for trees the block walk cannot be trusted on (a replayed log over them). */
async function* compareItems(img: ImageReader, left: TreeRoot, right: TreeRoot): AsyncGenerator<ItemChange> {
  const lo = { objectid: 0n, type: 0, offset: 0n };
  const hi = { objectid: (1n << 64n) - 1n, type: 255, offset: (1n << 64n) - 1n };
  const li = img.trees.iterate(left, lo, hi);
  const ri = img.trees.iterate(right, lo, hi);
  let a = await li.next();
  let b = await ri.next();
  while (!a.done || !b.done) {
    const cmp = a.done ? 1 : b.done ? -1 : compareKeys(a.value.key, b.value.key);
    if (cmp < 0) {
      yield { key: a.value!.key, left: a.value!.data };
      a = await li.next();
    } else if (cmp > 0) {
      yield { key: b.value!.key, right: b.value!.data };
      b = await ri.next();
    } else {
      if (!sameBytes(a.value!.data, b.value!.data)) yield { key: a.value!.key, left: a.value!.data, right: b.value!.data };
      a = await li.next();
      b = await ri.next();
    }
  }
}
