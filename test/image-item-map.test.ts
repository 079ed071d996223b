import { describe, expect, it } from 'vitest';
import { compareKeys, ItemMap, KEY_MAX, keyFromString, keyString, type Key } from '../src/image/write/item-map.js';
import { PageStore, type SpillBackend } from '../src/image/write/page-store.js';
import { rng } from './helpers/random-fs.js';

/** Spill backend in memory that also counts traffic, so tests can see pages really left the heap. */
class MemSpill implements SpillBackend {
  buf = new Uint8Array(1 << 16);
  writes = 0;
  reads = 0;
  write(offset: number, bytes: Uint8Array): void {
    while (offset + bytes.length > this.buf.length) {
      const b = new Uint8Array(this.buf.length * 2);
      b.set(this.buf);
      this.buf = b;
    }
    this.buf.set(bytes, offset);
    this.writes++;
  }
  read(offset: number, len: number): Uint8Array {
    this.reads++;
    return this.buf.slice(offset, offset + len);
  }
}

type Rng = ReturnType<typeof rng>;

const U64 = (1n << 64n) - 1n;

function randomKey(r: Rng): Key {
  // few objectids and types so ranges and collisions are common; extremes of u64 included
  const objs = [0n, 1n, 5n, 256n, 257n, 1000n, U64 - 8n, U64];
  return {
    objectid: r.pick(objs),
    type: r.pick([1, 12, 84, 96, 108, 255]),
    offset: r.chance(0.1) ? U64 - BigInt(r.int(3)) : BigInt(r.int(400)),
  };
}

function payload(r: Rng): Uint8Array {
  const len = r.chance(0.05) ? 3000 + r.int(10000) : r.int(200);
  const d = new Uint8Array(len);
  for (let i = 0; i < len; i++) d[i] = r.int(256);
  return d;
}

function check(m: ItemMap, ref: Map<string, Uint8Array>, r: Rng): void {
  const sorted = [...ref.keys()].sort();
  expect(m.size).toBe(ref.size);
  expect(m.dataBytes).toBe([...ref.values()].reduce((n, d) => n + d.length, 0));
  const all = [...m.entries()];
  expect(all.map((i) => keyString(i.key))).toEqual(sorted);
  const same = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
    a === undefined || b === undefined ? a === b : Buffer.compare(a, b) === 0;
  expect(all.filter((it) => !same(it.data, ref.get(keyString(it.key)))).length).toBe(0);
  for (let q = 0; q < 20; q++) {
    let a = randomKey(r);
    let b = randomKey(r);
    if (compareKeys(a, b) > 0) [a, b] = [b, a];
    const inRange = sorted.filter((k) => k >= keyString(a) && k <= keyString(b));
    expect(m.range(a, b).map((i) => keyString(i.key))).toEqual(inRange);
    const f = m.first(a, b);
    expect(f ? keyString(f.key) : undefined).toBe(inRange[0]);
    const l = m.last(b, a);
    expect(l ? keyString(l.key) : undefined).toBe(inRange[inRange.length - 1]);
    expect(same(m.get(a), ref.get(keyString(a)))).toBe(true);
  }
}

describe('ItemMap (paged)', () => {
  it('keys round-trip through their string form and sort in kernel key order', () => {
    const r = rng(7);
    const keys = Array.from({ length: 500 }, () => randomKey(r));
    for (const k of keys) expect(keyFromString(keyString(k))).toEqual(k);
    const byString = [...keys].sort((a, b) => (keyString(a) < keyString(b) ? -1 : keyString(a) > keyString(b) ? 1 : 0));
    const byKey = [...keys].sort(compareKeys);
    expect(byString).toEqual(byKey);
  });

  for (const mode of ['no budget pressure', 'tiny budget, packed in memory', 'tiny budget, spilled'] as const) {
    it(`matches a reference map under random puts, replaces and deletes (${mode})`, () => {
      const spill = new MemSpill();
      const store = mode === 'no budget pressure' ? new PageStore({ budget: 1 << 30 })
        : new PageStore({ budget: 64 << 10, spill: mode === 'tiny budget, spilled' ? spill : undefined });
      const m = new ItemMap(store);
      const ref = new Map<string, Uint8Array>();
      const r = rng(mode.length);
      for (let step = 0; step < 6000; step++) {
        const k = randomKey(r);
        if (r.chance(0.3)) {
          expect(m.delete(k)).toBe(ref.delete(keyString(k)));
        } else {
          const d = payload(r);
          m.put(k, d);
          ref.set(keyString(k), d);
        }
        if (step % 1500 === 0) check(m, ref, r);
      }
      check(m, ref, r);
      if (mode !== 'no budget pressure') {
        expect(store.stats.evictions).toBeGreaterThan(10);
        expect(store.hotBytes).toBeLessThanOrEqual(store.budget + 40000);
      }
      if (mode === 'tiny budget, spilled') {
        expect(spill.writes).toBeGreaterThan(10);
        expect(spill.reads).toBeGreaterThan(10);
      }
    });
  }

  for (const spilled of [false, true]) {
    it(`copyFrom gives an independent copy (pages ${spilled ? 'spilled' : 'packed in memory'})`, () => {
      const store = new PageStore({ budget: 48 << 10, spill: spilled ? new MemSpill() : undefined });
      const a = new ItemMap(store);
      const refA = new Map<string, Uint8Array>();
      const r = rng(spilled ? 11 : 12);
      for (let i = 0; i < 3000; i++) {
        const k = randomKey(r);
        const d = payload(r);
        a.put(k, d);
        refA.set(keyString(k), d);
      }
      const b = new ItemMap(store);
      b.put({ objectid: 9n, type: 9, offset: 9n }, new Uint8Array(3)); // dropped by the copy
      b.copyFrom(a);
      const refB = new Map(refA);
      check(b, refB, r);
      // change both sides; neither may see the other's changes
      for (let i = 0; i < 2000; i++) {
        const k = randomKey(r);
        const [m, ref] = i % 2 ? [a, refA] : [b, refB];
        if (r.chance(0.4)) {
          m.delete(k);
          ref.delete(keyString(k));
        } else {
          const d = payload(r);
          m.put(k, d);
          ref.set(keyString(k), d);
        }
      }
      check(a, refA, r);
      check(b, refB, r);
    });
  }

  it('entries() stays correct while the walker deletes and rewrites what it visits', () => {
    const store = new PageStore({ budget: 32 << 10, spill: new MemSpill() });
    const m = new ItemMap(store);
    for (let i = 0; i < 3000; i++) m.put({ objectid: BigInt(i), type: 1, offset: 0n }, new Uint8Array([i & 255]));
    const seen: string[] = [];
    for (const it of m.entries()) {
      seen.push(keyString(it.key));
      m.delete(it.key);
      if (it.key.objectid % 2n === 0n) m.put({ ...it.key, type: 2 }, new Uint8Array(40));
    }
    // every original key exactly once, in order (keys inserted during the walk may or may not be visited)
    const originals = seen.filter((k) => keyFromString(k).type === 1);
    expect(originals).toEqual(Array.from({ length: 3000 }, (_, i) => keyString({ objectid: BigInt(i), type: 1, offset: 0n })));
    expect(new Set(seen).size).toBe(seen.length);
    expect(m.size).toBe(1500);
    expect(m.range().every((it) => it.key.type === 2 && it.data.length === 40)).toBe(true);
  });

  it('sorted bulk loads fill pages instead of leaving them half empty', () => {
    const store = new PageStore({ budget: 1 << 30 });
    const m = new ItemMap(store);
    for (let i = 0; i < 10000; i++) m.put({ objectid: 256n, type: 108, offset: BigInt(i) * 4096n }, new Uint8Array(53));
    expect(m.size).toBe(10000);
    expect(m.last(KEY_MAX)!.key.offset).toBe(9999n * 4096n);
    // 10000 items of 53 bytes: 128 per page when appended in order (half that if pages split evenly)
    expect(m.pageCount).toBeLessThanOrEqual(Math.ceil(10000 / 128) + 1);
  });
});
