import { type BtrfsKey, compareKeys, type LeafItem } from '../structs.js';

/**
 * Changes laid over trees in memory: items added, replaced or deleted, never written. The readers use
 * it for the tree log, whose replay (mount-time work of the kernel) must show in what they read while
 * the image stays untouched. Small by nature (what one fsync logged), so a sorted array per tree is
 * rebuilt when it changed and is then merged with the on-disk items.
 */
export class TreeOverlay {
  private trees = new Map<bigint, { items: Map<string, { key: BtrfsKey; data: Uint8Array | null }>; sorted?: { key: BtrfsKey; data: Uint8Array | null }[] }>();

  private static id(k: BtrfsKey): string {
    return `${k.objectid}:${k.type}:${k.offset}`;
  }

  /** The trees this overlay changes. */
  treeIds(): bigint[] {
    return [...this.trees.keys()];
  }

  has(tree: bigint): boolean {
    return this.trees.has(tree);
  }

  private tree(tree: bigint) {
    let t = this.trees.get(tree);
    if (!t) this.trees.set(tree, (t = { items: new Map() }));
    return t;
  }

  put(tree: bigint, key: BtrfsKey, data: Uint8Array): void {
    const t = this.tree(tree);
    t.items.set(TreeOverlay.id(key), { key: { ...key }, data });
    t.sorted = undefined;
  }

  delete(tree: bigint, key: BtrfsKey): void {
    const t = this.tree(tree);
    t.items.set(TreeOverlay.id(key), { key: { ...key }, data: null });
    t.sorted = undefined;
  }

  /** The overlay's entry for `key`: undefined when it does not touch it, null when it deleted it. */
  get(tree: bigint, key: BtrfsKey): Uint8Array | null | undefined {
    const e = this.trees.get(tree)?.items.get(TreeOverlay.id(key));
    return e === undefined ? undefined : e.data;
  }

  /** Entries (deletions included) with from <= key <= to, in key order. */
  range(tree: bigint, from: BtrfsKey, to: BtrfsKey): { key: BtrfsKey; data: Uint8Array | null }[] {
    const t = this.trees.get(tree);
    if (!t) return [];
    t.sorted ??= [...t.items.values()].sort((a, b) => compareKeys(a.key, b.key));
    return t.sorted.filter((e) => compareKeys(e.key, from) >= 0 && compareKeys(e.key, to) <= 0);
  }

  /** Merges on-disk items (in key order) with this overlay's entries for `tree`. */
  async *merge(tree: bigint, base: AsyncIterable<LeafItem>, from: BtrfsKey, to: BtrfsKey): AsyncGenerator<LeafItem> {
    const over = this.range(tree, from, to);
    let i = 0;
    for await (const it of base) {
      while (i < over.length && compareKeys(over[i]!.key, it.key) < 0) {
        const o = over[i++]!;
        if (o.data) yield { key: o.key, data: o.data };
      }
      if (i < over.length && compareKeys(over[i]!.key, it.key) === 0) {
        const o = over[i++]!;
        if (o.data) yield { key: o.key, data: o.data };
        continue;
      }
      yield it;
    }
    for (; i < over.length; i++) {
      const o = over[i]!;
      if (o.data) yield { key: o.key, data: o.data };
    }
  }
}
