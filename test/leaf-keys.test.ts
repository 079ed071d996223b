import { describe, expect, it } from 'vitest';
import {
  compareLeafKey, compareLeafKeys, diskKey, leafData, leafItem, leafKey, leafSize, leafSlotLE, sameLeafData, sameLeafRuns,
} from '../src/image/read/leaf-keys.js';
import { slotLE } from '../src/image/read/tree.js';
import * as S from '../src/image/structs.js';
import { nativeAddon } from '../src/util/native-addon.js';

// Keys whose order is decided by each 32-bit half of objectid and offset, and by the type byte: what
// comparing a key's bytes as halves (compareDiskKeys) must get right where a BigInt compare is plain.
const U64 = [0n, 1n, 0xffffffffn, 1n << 32n, (1n << 32n) + 1n, 0x80000000n, 1n << 63n, (1n << 64n) - 1n, 0x1234_5678_9abc_def0n];
const keys: S.BtrfsKey[] = [];
for (const objectid of U64) for (const type of [0, 1, 108, 255]) for (const offset of [0n, 0xffffffffn, 1n << 32n, (1n << 64n) - 1n]) keys.push({ objectid, type, offset });

const header = { fsid: new Uint8Array(16), bytenr: 1n << 22n, flags: S.BTRFS_HEADER_FLAG_WRITTEN, chunk_tree_uuid: new Uint8Array(16), generation: 7n, owner: 5n };
const leafOf = (items: S.LeafItem[]): S.TreeBlock => S.parseTreeBlock(S.buildLeaf(header, items, 16384, S.BTRFS_CSUM_TYPE_CRC32));
const sorted = [...keys].sort(S.compareKeys);
const sign = (x: number): number => Math.sign(x);

describe('leaf keys compared in the block bytes', () => {
  it('compareDiskKeys orders every pair of keys as compareKeys does', () => {
    const a = new DataView(new ArrayBuffer(17));
    const b = new DataView(new ArrayBuffer(17));
    let unequal = 0;
    for (const x of keys) {
      diskKey(x, a);
      for (const y of keys) {
        const want = S.compareKeys(x, y);
        expect(sign(S.compareDiskKeys(a, 0, diskKey(y, b), 0)), `${S.formatKey(x)} vs ${S.formatKey(y)}`).toBe(want);
        if (want !== 0) unequal++;
      }
    }
    expect(unequal).toBe(keys.length * (keys.length - 1));
  });

  it('a parsed leaf gives the same keys, items, slots and comparisons as its item objects', () => {
    // 144 items: every key of the list, in order, each with data of its own length
    const items = sorted.map((key, i) => ({ key, data: new Uint8Array(i % 7).fill(i) }));
    const tb = leafOf(items);
    expect(tb.header.nritems).toBe(items.length);
    for (let i = 0; i < items.length; i++) {
      expect(leafKey(tb, i)).toEqual(items[i]!.key);
      expect(Array.from(leafData(tb, i))).toEqual(Array.from(items[i]!.data));
      expect(leafItem(tb, i).key).toEqual(tb.items[i]!.key);
    }
    const probes = [...keys, { objectid: 2n, type: 3, offset: 4n }, { objectid: (1n << 64n) - 1n, type: 255, offset: (1n << 64n) - 1n }];
    for (const k of probes) {
      const dk = diskKey(k);
      expect(leafSlotLE(tb, dk), S.formatKey(k)).toBe(slotLE(tb.items, k));
      for (const i of [0, 50, items.length - 1]) expect(sign(compareLeafKey(tb, i, dk))).toBe(S.compareKeys(items[i]!.key, k));
    }
    expect(leafSlotLE(leafOf([]), diskKey(keys[0]!))).toBe(-1);
  });

  it('items of two leaves compare by key and by their bytes', () => {
    const k = (objectid: bigint, offset: bigint): S.BtrfsKey => ({ objectid, type: 1, offset });
    const a = leafOf([{ key: k(5n, 0n), data: new Uint8Array([1, 2, 3]) }, { key: k(5n, 1n << 32n), data: new Uint8Array([1, 2]) }, { key: k(6n, 0n), data: new Uint8Array(0) }]);
    const b = leafOf([{ key: k(5n, 0n), data: new Uint8Array([1, 2, 4]) }, { key: k(5n, 1n), data: new Uint8Array([1, 2]) }, { key: k(6n, 0n), data: new Uint8Array(0) }, { key: k(7n, 0n), data: new Uint8Array([1, 2, 3]) }]);
    expect(compareLeafKeys(a, 0, b, 0)).toBe(0);
    expect(sameLeafData(a, 0, b, 0)).toBe(false); // last byte differs
    expect(compareLeafKeys(a, 1, b, 1)).toBeGreaterThan(0); // the offsets differ in their high half only
    expect(sameLeafData(a, 1, b, 1)).toBe(true);
    expect(sameLeafData(a, 2, b, 2)).toBe(true); // empty
    expect(sameLeafData(a, 0, b, 3)).toBe(true);
    expect(sameLeafData(a, 1, b, 3)).toBe(false); // a prefix of the other
  });

  it('runs of items compare as one range: equal only when every item of the run is', () => {
    // 20 items of 0..6 bytes at the same keys in both leaves; the right leaf has an item before them, so
    // the same items sit at other offsets on each side, and its item 9 differs in its last byte
    const mk = (i: number, tweak: boolean): S.LeafItem => {
      const data = new Uint8Array(i % 7).map((_, k) => i * 7 + k);
      if (tweak) data[data.length - 1]! ^= 0x40;
      return { key: { objectid: 300n + BigInt(i), type: 1, offset: 0n }, data };
    };
    const first = { key: { objectid: 299n, type: 1, offset: 0n }, data: new Uint8Array(33).fill(9) };
    const a = leafOf(Array.from({ length: 20 }, (_, i) => mk(i, false)));
    const same = leafOf([first, ...Array.from({ length: 20 }, (_, i) => mk(i, false))]);
    const c = leafOf([first, ...Array.from({ length: 20 }, (_, i) => mk(i, i === 9))]);
    expect([leafSize(a, 6), leafSize(a, 7), leafSize(c, 10)]).toEqual([6, 0, 2]);
    expect(sameLeafRuns(a, 0, same, 1, 20)).toBe(true);
    expect(sameLeafData(a, 9, c, 10)).toBe(false);
    expect(sameLeafRuns(a, 0, c, 1, 20)).toBe(false);
    expect(sameLeafRuns(a, 0, c, 1, 9)).toBe(true);
    expect(sameLeafRuns(a, 8, c, 9, 2)).toBe(false);
    expect(sameLeafRuns(a, 9, c, 10, 1)).toBe(false);
    expect(sameLeafRuns(a, 10, c, 11, 10)).toBe(true);
  });

  it('parseTreeBlock refuses keys out of order in either half of a u64, and a repeated key', () => {
    const d = new Uint8Array(4);
    const bad = (x: S.BtrfsKey, y: S.BtrfsKey) => () => leafOf([{ key: x, data: d }, { key: y, data: d }]);
    expect(bad({ objectid: 256n, type: 1, offset: 1n << 32n }, { objectid: 256n, type: 1, offset: 1n })).toThrow(/keys out of order at slot 1/);
    expect(bad({ objectid: 1n << 32n, type: 1, offset: 0n }, { objectid: 2n, type: 1, offset: 5n })).toThrow(/keys out of order at slot 1/);
    expect(bad({ objectid: 256n, type: 12, offset: 0n }, { objectid: 256n, type: 1, offset: 9n })).toThrow(/keys out of order at slot 1/);
    expect(bad({ objectid: 256n, type: 1, offset: 7n }, { objectid: 256n, type: 1, offset: 7n })).toThrow(/keys out of order at slot 1/);
    expect(bad({ objectid: 256n, type: 1, offset: 1n }, { objectid: 256n, type: 1, offset: 1n << 32n })).not.toThrow();
    const node = S.buildNode(header, 1, [{ key: { objectid: 9n, type: 1, offset: 1n << 40n }, blockptr: 1n << 30n, generation: 7n }, { key: { objectid: 9n, type: 1, offset: 1n << 33n }, blockptr: 1n << 31n, generation: 7n }], 16384, S.BTRFS_CSUM_TYPE_CRC32);
    expect(() => S.parseTreeBlock(node)).toThrow(/keys out of order at slot 1/);
  });
});

describe.skipIf(!nativeAddon?.treeBlockOk || !nativeAddon?.leafMerge)('the native addon\'s leaf scans (native/leaf-scan.c)', () => {
  const addon = nativeAddon!;
  // a pseudo-random sequence, so that a failure can be run again
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const randomItems = (count: number): S.LeafItem[] => {
    const picked = new Map<string, S.BtrfsKey>();
    while (picked.size < count) {
      const k = keys[rand(keys.length)]!;
      const key = { ...k, offset: k.offset ^ BigInt(rand(3)) };
      picked.set(S.formatKey(key), key);
    }
    return [...picked.values()].sort(S.compareKeys).map((key) => ({ key, data: new Uint8Array(rand(9)).map(() => rand(3)) }));
  };

  it('treeBlockOk passes the blocks parseTreeBlock takes and fails each that it refuses', () => {
    const raw = (items: S.LeafItem[]) => S.buildLeaf(header, items, 16384, S.BTRFS_CSUM_TYPE_CRC32);
    const ok = (b: Uint8Array, level = 0) => addon.treeBlockOk!(b, 16384, level, S.decodeHeader(b).nritems);
    for (let round = 0; round < 20; round++) {
      const items = randomItems(1 + rand(120));
      const b = raw(items);
      expect(ok(b)).toBe(true);
      expect(() => S.parseTreeBlock(b)).not.toThrow();
      if (items.length < 2) continue;
      // two neighbouring item headers swapped (keys out of order or data misplaced), an item's offset or
      // size one off: refused by both
      const at = 1 + rand(items.length - 1);
      const p = S.BTRFS_HEADER_SIZE + at * S.BTRFS_ITEM_SIZE;
      const swapped = b.slice();
      swapped.copyWithin(p - S.BTRFS_ITEM_SIZE, p, p + S.BTRFS_ITEM_SIZE);
      swapped.set(b.subarray(p - S.BTRFS_ITEM_SIZE, p), p);
      const offsetOff = b.slice();
      offsetOff[p + 17]! ^= 1;
      const sizeOff = b.slice();
      sizeOff[p + 21]! ^= 1;
      for (const bad of [swapped, offsetOff, sizeOff]) {
        expect(() => S.parseTreeBlock(bad)).toThrow(/tree block: (keys out of order|item \d+ data)/);
        expect(ok(bad)).toBe(false);
      }
    }
    // a key pointer out of order in a node; nritems past the block
    const ptr = (offset: bigint) => ({ key: { objectid: 9n, type: 1, offset }, blockptr: 1n << 30n, generation: 7n });
    expect(ok(S.buildNode(header, 1, [ptr(1n), ptr(1n << 33n)], 16384, S.BTRFS_CSUM_TYPE_CRC32), 1)).toBe(true);
    expect(ok(S.buildNode(header, 1, [ptr(1n << 40n), ptr(1n << 33n)], 16384, S.BTRFS_CSUM_TYPE_CRC32), 1)).toBe(false);
    const leaf = raw(randomItems(3));
    expect(addon.treeBlockOk!(leaf, 16384, 0, 1000)).toBe(false);
    expect(addon.treeBlockOk!(leaf.subarray(0, 8192), 16384, 0, 3)).toBe(false);
  });

  it('leafMerge lists the differing items of two leaves as a merge of their item objects does', () => {
    // one byte more, or the last byte changed
    const changed = (it: S.LeafItem): S.LeafItem => {
      const data = it.data.length > 0 && rand(2) ? it.data.slice() : new Uint8Array([...it.data, 1]);
      if (data === it.data || data.length === it.data.length) data[data.length - 1]! ^= 0x80;
      return { ...it, data };
    };
    for (let round = 0; round < 30; round++) {
      // the right leaf: some of the left one's items as they are, some changed, some of its own
      const left = randomItems(rand(80));
      const right = new Map(left.filter(() => rand(4) > 0).map((it) => [S.formatKey(it.key), rand(5) === 0 ? changed(it) : it]));
      for (const it of randomItems(rand(20))) right.set(S.formatKey(it.key), it);
      const a = leafOf(left);
      const b = leafOf([...right.values()].sort((x, y) => S.compareKeys(x.key, y.key)));
      const want: [number, number][] = [];
      let i = 0;
      let j = 0;
      while (i < a.header.nritems && j < b.header.nritems) {
        const c = S.compareKeys(a.items[i]!.key, b.items[j]!.key);
        if (c < 0) want.push([i++, -1]);
        else if (c > 0) want.push([-1, j++]);
        else {
          if (Buffer.compare(a.items[i]!.data, b.items[j]!.data) !== 0) want.push([i, j]);
          i++;
          j++;
        }
      }
      // in batches of three, from the start, as mergeLeaves calls it
      const got: [number, number][] = [];
      const out = new Int32Array(2 + 2 * 3);
      let at = [0, 0];
      for (;;) {
        const n = addon.leafMerge!(a.raw, at[0]!, a.header.nritems, b.raw, at[1]!, b.header.nritems, out);
        expect(n).toBeGreaterThanOrEqual(0);
        for (let k = 0; k < n; k++) got.push([out[2 + 2 * k]!, out[3 + 2 * k]!]);
        at = [out[0]!, out[1]!];
        if (n < 3) break;
      }
      expect(got).toEqual(want);
      expect(at).toEqual([i, j]);
    }
    // slots past either block: refused, nothing written
    const a = leafOf(randomItems(4));
    const out = new Int32Array(8).fill(7);
    expect(addon.leafMerge!(a.raw, 0, 1000, a.raw, 0, 4, out)).toBe(-1);
    expect(addon.leafMerge!(a.raw, 5, 4, a.raw, 0, 4, out)).toBe(-1);
    expect([...out]).toEqual([7, 7, 7, 7, 7, 7, 7, 7]);
  });
});
