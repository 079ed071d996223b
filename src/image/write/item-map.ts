/**
 * Sorted map of btrfs items for one tree, keyed by (objectid u64, type u8, offset u64).
 *
 * Order lives in a list of small sorted buckets (a "sorted list of lists"): inserts touch one bucket of at
 * most BUCKET_MAX keys, so building a tree of a million items in random key order (dir item hashes) stays
 * fast without a balanced tree. Point lookups go through a Map. Keys are encoded as 9 fixed-width UTF-16
 * code units (objectid and offset as four 16-bit units each, big end first, the type as one) so plain string
 * comparison, which compares code units, is the kernel's key order (btrfs_comp_cpu_keys). (Fixed-width hex,
 * used before, made keys 34 characters long: building, hashing and comparing them was ~15% of a receive of
 * many small files.)
 */
import type { BtrfsKey } from '../structs/fs-items.js';

export type Key = BtrfsKey;

export interface Item {
  key: Key;
  data: Uint8Array;
}

const U64_MAX = (1n << 64n) - 1n;
const BUCKET_MAX = 512;

const M32 = 0xffffffffn;

export function keyString(k: Key): string {
  const oh = Number(k.objectid >> 32n);
  const ol = Number(k.objectid & M32);
  const fh = Number(k.offset >> 32n);
  const fl = Number(k.offset & M32);
  return String.fromCharCode(oh >>> 16, oh & 0xffff, ol >>> 16, ol & 0xffff, k.type, fh >>> 16, fh & 0xffff, fl >>> 16, fl & 0xffff);
}

export function compareKeys(a: Key, b: Key): number {
  if (a.objectid !== b.objectid) return a.objectid < b.objectid ? -1 : 1;
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  if (a.offset !== b.offset) return a.offset < b.offset ? -1 : 1;
  return 0;
}

export const KEY_MIN: Key = { objectid: 0n, type: 0, offset: 0n };
export const KEY_MAX: Key = { objectid: U64_MAX, type: 255, offset: U64_MAX };

export class ItemMap {
  private readonly items = new Map<string, Item>();
  private buckets: string[][] = [];
  /** Total bytes of item payloads, kept so commit can size trees without a walk. */
  dataBytes = 0;

  get size(): number {
    return this.items.size;
  }

  get(key: Key): Uint8Array | undefined {
    return this.items.get(keyString(key))?.data;
  }

  has(key: Key): boolean {
    return this.items.has(keyString(key));
  }

  put(key: Key, data: Uint8Array): void {
    if (key.objectid < 0n || key.objectid > U64_MAX || key.offset < 0n || key.offset > U64_MAX || key.type < 0 || key.type > 255) {
      throw new RangeError(`key (${key.objectid} ${key.type} ${key.offset}) is outside the u64/u8 ranges`);
    }
    const ks = keyString(key);
    const old = this.items.get(ks);
    if (old) {
      this.dataBytes += data.length - old.data.length;
      old.data = data;
      return;
    }
    this.items.set(ks, { key: { objectid: key.objectid, type: key.type, offset: key.offset }, data });
    this.dataBytes += data.length;
    this.insertOrder(ks);
  }

  delete(key: Key): boolean {
    const ks = keyString(key);
    const old = this.items.get(ks);
    if (!old) return false;
    this.items.delete(ks);
    this.dataBytes -= old.data.length;
    const b = this.bucketFor(ks);
    const bucket = this.buckets[b]!;
    const i = lowerBound(bucket, ks);
    bucket.splice(i, 1);
    if (bucket.length === 0) this.buckets.splice(b, 1);
    return true;
  }

  /** Items with min <= key <= max in key order (a snapshot: safe to mutate the map while using it). */
  range(min: Key = KEY_MIN, max: Key = KEY_MAX): Item[] {
    const lo = keyString(min);
    const hi = keyString(max);
    const out: Item[] = [];
    const start = this.bucketFor(lo);
    for (let b = start; b < this.buckets.length; b++) {
      const bucket = this.buckets[b]!;
      for (let i = b === start ? lowerBound(bucket, lo) : 0; i < bucket.length; i++) {
        const ks = bucket[i]!;
        if (ks > hi) return out;
        out.push(this.items.get(ks)!);
      }
    }
    return out;
  }

  /** First item with key >= min (and <= max when given), without building a range. */
  first(min: Key = KEY_MIN, max: Key = KEY_MAX): Item | undefined {
    const lo = keyString(min);
    for (let b = this.bucketFor(lo); b < this.buckets.length; b++) {
      const bucket = this.buckets[b]!;
      const i = lowerBound(bucket, lo);
      if (i < bucket.length) {
        const ks = bucket[i]!;
        return ks > keyString(max) ? undefined : this.items.get(ks);
      }
    }
    return undefined;
  }

  /** Last item with key <= max (and >= min when given). */
  last(max: Key = KEY_MAX, min: Key = KEY_MIN): Item | undefined {
    const hi = keyString(max);
    for (let b = Math.min(this.bucketFor(hi), this.buckets.length - 1); b >= 0; b--) {
      const bucket = this.buckets[b]!;
      const i = lowerBound(bucket, hi);
      const j = i < bucket.length && bucket[i] === hi ? i : i - 1;
      if (j >= 0) {
        const ks = bucket[j]!;
        return ks < keyString(min) ? undefined : this.items.get(ks);
      }
    }
    return undefined;
  }

  /** Every item in key order. */
  *entries(): IterableIterator<Item> {
    for (const bucket of this.buckets) for (const ks of bucket) yield this.items.get(ks)!;
  }

  /** Index of the bucket whose range should hold `ks` (first bucket with last key >= ks). */
  private bucketFor(ks: string): number {
    let lo = 0;
    let hi = this.buckets.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const bucket = this.buckets[mid]!;
      if (bucket[bucket.length - 1]! < ks) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private insertOrder(ks: string): void {
    if (this.buckets.length === 0) {
      this.buckets.push([ks]);
      return;
    }
    let b = this.bucketFor(ks);
    if (b === this.buckets.length) b--; // beyond every key: append to the last bucket
    const bucket = this.buckets[b]!;
    bucket.splice(lowerBound(bucket, ks), 0, ks);
    if (bucket.length > BUCKET_MAX) this.buckets.splice(b + 1, 0, bucket.splice(BUCKET_MAX >> 1));
  }
}

function lowerBound(arr: string[], ks: string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid]! < ks) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
