import { describe, expect, it } from 'vitest';
import { BTree } from '../src/image/engine/ctree.js';
import { ChunkMap } from '../src/image/read/chunk-map.js';
import { fromBlockDevice } from '../src/image/read/source.js';
import { TreeReader } from '../src/image/read/tree.js';
import {
  BTRFS_BACKREF_REV_SHIFT, BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_METADATA, BTRFS_HEADER_FLAG_RELOC, BTRFS_MIXED_BACKREF_REV,
} from '../src/image/structs/constants.js';
import { type BtrfsKey, compareKeys } from '../src/image/structs/fs-items.js';
import type { MemoryDevice } from '../src/image/device.js';
import { makeStore, Model, TEST_FSID, walkTree } from './helpers/engine-harness.js';
import { rng } from './helpers/random-fs.js';

const ROOTID = 5n;

function payload(r: ReturnType<typeof rng>, n: number, tag: number): Uint8Array {
  const d = new Uint8Array(n);
  for (let i = 0; i < n; i++) d[i] = (tag + i * 7) & 255;
  if (n > 0) d[0] = r.int(256);
  return d;
}

/** Item sizes that exercise every split: mostly small, some half-leaf, a few near the maximum. */
function size(r: ReturnType<typeof rng>, nodesize: number): number {
  const max = nodesize - 101 - 25;
  const k = r.int(100);
  if (k < 70) return r.int(200);
  if (k < 90) return r.int(max / 2);
  return max - r.int(64);
}

function sameItems(a: { key: BtrfsKey; data: Uint8Array }[], b: { key: BtrfsKey; data: Uint8Array }[]): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    if (compareKeys(a[i]!.key, b[i]!.key) !== 0 || Buffer.compare(a[i]!.data, b[i]!.data) !== 0) {
      throw new Error(`item ${i} differs: ${a[i]!.key.objectid}/${a[i]!.key.type}/${a[i]!.key.offset} vs ${b[i]!.key.objectid}/${b[i]!.key.type}/${b[i]!.key.offset}`);
    }
  }
}

/** The tree read back from the device by the image reader (what any other program would see). */
async function readBack(device: MemoryDevice, nodesize: number, root: { bytenr: bigint; level: number; generation: bigint }) {
  const chunks = new ChunkMap(1n);
  const start = 1n << 24n;
  chunks.add({ objectid: 256n, type: 228, offset: start }, {
    length: (1n << 30n) - start, owner: 2n, stripe_len: 65536n, type: BTRFS_BLOCK_GROUP_METADATA | BTRFS_BLOCK_GROUP_DUP,
    io_align: 65536, io_width: 65536, sector_size: 4096, sub_stripes: 1,
    stripes: [{ devid: 1n, offset: start, dev_uuid: new Uint8Array(16) }, { devid: 1n, offset: start + (1n << 30n), dev_uuid: new Uint8Array(16) }],
  });
  const reader = new TreeReader(fromBlockDevice(device), chunks, nodesize, TEST_FSID, 0);
  const out: { key: BtrfsKey; data: Uint8Array }[] = [];
  for await (const it of reader.iterate({ id: ROOTID, ...root }, { objectid: 0n, type: 0, offset: 0n }, { objectid: (1n << 64n) - 1n, type: 255, offset: (1n << 64n) - 1n })) {
    out.push({ key: it.key, data: it.data.slice() });
  }
  return out;
}

/**
 * Random puts (new keys and replacements of every size), deletes (present and absent) and lookups
 * against a Map model, over several transactions: after each, the structure is checked, the tree is
 * read back from the device by the image reader, and every block the space handed out is either in the
 * tree or freed (nothing leaks, nothing is freed twice).
 */
async function randomRun(seed: number, nodesize: number, ops: number, txns: number, budget?: number) {
  const r = rng(seed);
  const { store, space, device } = makeStore(nodesize, budget);
  const t = BTree.create(store, ROOTID);
  const model = new Model();
  const keys: BtrfsKey[] = [];
  const keyOf = (): BtrfsKey => {
    if (keys.length && r.chance(0.3)) return r.pick(keys);
    const k = { objectid: BigInt(r.int(r.chance(0.5) ? 50 : 5000)), type: r.pick([1, 12, 84, 96, 108]), offset: BigInt(r.int(1 << 20)) };
    keys.push(k);
    return k;
  };
  for (let txn = 0; txn < txns; txn++) {
    // later transactions shrink the tree, so merges and root collapses get their turn
    const deleting = txn >= txns - 2 ? 0.75 : 0.3;
    for (let i = 0; i < ops; i++) {
      const k = keyOf();
      if (r.chance(deleting)) {
        expect(t.delete(k)).toBe(model.delete(k));
      } else if (r.chance(0.2)) {
        // insert-only (the kernel's -EEXIST): an existing key keeps its payload
        const d = payload(r, size(r, nodesize), i);
        const isNew = model.get(k) === undefined;
        expect(t.put(k, d, true)).toBe(isNew);
        if (isNew) model.put(k, d);
      } else {
        const d = payload(r, size(r, nodesize), i);
        t.put(k, d);
        model.put(k, d);
      }
      if (r.chance(0.05)) {
        const probe = r.pick(keys);
        const got = t.get(probe);
        const want = model.get(probe);
        expect(got === undefined ? undefined : Buffer.from(got)).toEqual(want === undefined ? undefined : Buffer.from(want));
      }
      store.trim();
    }
    const w = walkTree(t);
    expect(w.problems).toEqual([]);
    sameItems(w.items, model.sorted());
    expect([...space.inUse].sort()).toEqual([...w.blocks].sort());
    store.writeDirty();
    space.commit();
    store.endTransaction();
    sameItems(await readBack(device, nodesize, t.root), model.sorted());
  }
  return { t, model, store, space, device };
}

describe('engine: copy-on-write B-tree', () => {
  it('matches a reference model under random puts/deletes/gets over 6 transactions (4 KiB nodes, 3 seeds)', async () => {
    for (const seed of [1, 2, 3]) {
      const { t, model } = await randomRun(seed, 4096, 1000, 6);
      expect(t.root.level).toBeGreaterThanOrEqual(0);
      sameItems([...t.entries()], model.sorted());
    }
  });

  it('grows to three levels, then shrinks back to one leaf when emptied', async () => {
    const { store, space } = makeStore(4096);
    const t = BTree.create(store, ROOTID);
    const model = new Model();
    const n = 24000;
    for (let i = 0; i < n; i++) {
      const k = { objectid: BigInt(256 + (i % 8000)), type: 1 + Math.floor(i / 8000), offset: 0n };
      const d = new Uint8Array(40).fill(i & 255);
      t.put(k, d);
      model.put(k, d);
    }
    expect(t.root.level).toBe(2);
    const w = walkTree(t);
    expect(w.problems).toEqual([]);
    sameItems(w.items, model.sorted());
    // item + header 65 bytes, 3995 usable -> 61 per leaf; three interleaved key runs split in the middle,
    // so leaves are not all full: allow some slack
    expect(w.blocks.size).toBeLessThan((n / 61) * 1.6);
    store.writeDirty();
    space.commit();
    store.endTransaction();
    for (const it of model.sorted()) expect(t.delete(it.key)).toBe(true);
    const after = walkTree(t);
    expect(after.problems).toEqual([]);
    expect(after.items).toEqual([]);
    expect(t.root.level).toBe(0);
    expect(space.inUse.size).toBe(1);
  });

  it('answers first/last/entries over ranges like the model, and entries survive changes made while walking', async () => {
    const { t, model } = await randomRun(7, 4096, 2000, 2);
    const all = model.sorted();
    const r = rng(99);
    for (let i = 0; i < 50; i++) {
      const a = all[r.int(all.length)]!.key;
      const b = all[r.int(all.length)]!.key;
      const [lo, hi] = compareKeys(a, b) <= 0 ? [a, b] : [b, a];
      const want = all.filter((x) => compareKeys(x.key, lo) >= 0 && compareKeys(x.key, hi) <= 0);
      sameItems([...t.entries(lo, hi)], want);
      expect(t.first(lo, hi)?.key).toEqual(want[0]?.key);
      expect(t.last(hi, lo)?.key).toEqual(want[want.length - 1]?.key);
    }
    expect(t.last({ objectid: 0n, type: 0, offset: 0n })).toBeUndefined();
    // deleting every visited item during the walk still visits each item once
    let seen = 0;
    for (const it of t.entries()) {
      expect(t.delete(it.key)).toBe(true);
      seen++;
    }
    expect(seen).toBe(all.length);
    expect([...t.entries()]).toEqual([]);
  });

  it('copies only the path it changes: one put in a committed 3-level tree writes one block per level', async () => {
    const { store, space } = makeStore(4096);
    const t = BTree.create(store, ROOTID);
    for (let i = 0; i < 20000; i++) t.put({ objectid: BigInt(i), type: 1, offset: 0n }, new Uint8Array(20));
    store.writeDirty();
    space.commit();
    store.endTransaction();
    const before = walkTree(t).blocks;
    const allocs = space.allocs;
    t.put({ objectid: 12345n, type: 1, offset: 0n }, new Uint8Array(20).fill(1));
    expect(space.allocs - allocs).toBe(t.root.level + 1);
    expect(store.writeDirty()).toBe(t.root.level + 1);
    expect(space.pinned.size).toBe(t.root.level + 1);
    const after = walkTree(t).blocks;
    expect([...after].filter((b) => !before.has(b)).length).toBe(t.root.level + 1);
  });

  it('under a tiny cache writes dirty blocks early and still ends equal to the model', async () => {
    const { t, model, store } = await randomRun(11, 4096, 3000, 3, 64 * 1024);
    expect(store.earlyWrites).toBeGreaterThan(0);
    store.trim();
    expect(store.cachedBlocks).toBeLessThanOrEqual(64);
    sameItems([...t.entries()], model.sorted());
  });

  it('an abandoned transaction leaves the committed tree intact on the device, early writes included', async () => {
    const { t, model, store, device } = await randomRun(5, 4096, 2000, 2, 64 * 1024);
    const committed = { ...t.root };
    const r = rng(6);
    const early = store.earlyWrites;
    for (let i = 0; i < 3000; i++) {
      const k = { objectid: BigInt(r.int(5000)), type: 1, offset: BigInt(r.int(100)) };
      if (r.chance(0.5)) t.delete(k);
      else t.put(k, new Uint8Array(r.int(300)));
      store.trim();
    }
    expect(store.earlyWrites).toBeGreaterThan(early);
    store.reset();
    sameItems(await readBack(device, 4096, committed), model.sorted());
  });

  it('a copy-on-write copy of a block relocation wrote drops the RELOC header flag (as __btrfs_cow_block does)', () => {
    const { store } = makeStore(4096);
    const t = BTree.create(store, ROOTID);
    t.put({ objectid: 1n, type: 1, offset: 0n }, new Uint8Array(8));
    store.writeDirty();
    store.endTransaction();
    const leaf = t.rootBlock();
    leaf.flags |= BTRFS_HEADER_FLAG_RELOC;
    t.put({ objectid: 2n, type: 1, offset: 0n }, new Uint8Array(8));
    const copy = t.rootBlock();
    expect(copy.bytenr).not.toBe(leaf.bytenr);
    expect(copy.flags & BTRFS_HEADER_FLAG_RELOC).toBe(0n);
    expect(copy.flags >> BTRFS_BACKREF_REV_SHIFT).toBe(BTRFS_MIXED_BACKREF_REV);
  });

  it('search hints: receive-like locality (appends, a few hot regions, deletes), every answer checked against the model', async () => {
    // searches start from the leaves of the last paths while no block was made, copied, freed or
    // dropped: this walks the same few leaves again and again, across splits, merges, evictions and a commit
    const r = rng(21);
    const { store, space } = makeStore(4096, 96 * 1024);
    const t = BTree.create(store, ROOTID);
    const model = new Model();
    const regions = [10n, 2000n, 50_000n];
    const next = [0n, 0n, 0n];
    for (let txn = 0; txn < 2; txn++) {
      for (let i = 0; i < 4000; i++) {
        const g = r.int(regions.length);
        const k: BtrfsKey = r.chance(0.6)
          ? { objectid: regions[g]! + next[g]!++, type: r.pick([1, 12, 108]), offset: 0n }
          : { objectid: regions[g]! + BigInt(r.int(Number(next[g]!) + 1)), type: r.pick([1, 12, 108]), offset: 0n };
        if (r.chance(0.2)) expect(t.delete(k)).toBe(model.delete(k));
        else if (r.chance(0.5)) {
          const d = payload(r, r.int(300), i);
          t.put(k, d);
          model.put(k, d);
        }
        const got = t.get(k);
        const want = model.get(k);
        expect(got === undefined ? undefined : Buffer.from(got)).toEqual(want === undefined ? undefined : Buffer.from(want));
        if (i % 25 === 0) {
          const f = t.first(k);
          const wf = model.sorted().find((x) => compareKeys(x.key, k) >= 0);
          expect(f?.key).toEqual(wf?.key);
        }
        store.trim();
      }
      const w = walkTree(t);
      expect(w.problems).toEqual([]);
      sameItems(w.items, model.sorted());
      store.writeDirty();
      space.commit();
      store.endTransaction();
    }
    expect(store.evictions).toBeGreaterThan(0);
  });

  it('refuses an item larger than a leaf', () => {
    const { store } = makeStore(4096);
    const t = BTree.create(store, ROOTID);
    expect(() => t.put({ objectid: 1n, type: 1, offset: 0n }, new Uint8Array(4096 - 101 - 24))).toThrow(/does not fit/);
    t.put({ objectid: 1n, type: 1, offset: 0n }, new Uint8Array(4096 - 101 - 25));
    expect(t.get({ objectid: 1n, type: 1, offset: 0n })?.length).toBe(4096 - 126);
  });
});
