/**
 * Sorted map of btrfs items for one tree, keyed by (objectid u64, type u8, offset u64).
 *
 * Items are kept in pages of at most PAGE_MAX_ITEMS items / PAGE_MAX_BYTES of payload, ordered by their
 * first key (a one-level B+ tree: the page list is small enough to binary-search and splice). Pages are
 * hot or cold under the budget of a shared PageStore (page-store.ts), so a tree of millions of items costs
 * memory only for the pages in use. An earlier version held every item as its own object in a Map: ~490
 * bytes of heap per item, ~6 KiB of RSS per received file.
 *
 * Keys are encoded as 9 fixed-width UTF-16 code units (objectid and offset as four 16-bit units each, big
 * end first, the type as one) so plain string comparison, which compares code units, is the kernel's key
 * order (btrfs_comp_cpu_keys).
 */
import type { BtrfsKey } from '../structs/fs-items.js';
import { HOT_ITEM_OVERHEAD, type PageLike, PageStore } from './page-store.js';

export type Key = BtrfsKey;

export interface Item {
  key: Key;
  data: Uint8Array;
}

const U64_MAX = (1n << 64n) - 1n;
const M32 = 0xffffffffn;
const PAGE_MAX_ITEMS = 128;
const PAGE_MAX_BYTES = 24 << 10;

export function keyString(k: Key): string {
  const oh = Number(k.objectid >> 32n);
  const ol = Number(k.objectid & M32);
  const fh = Number(k.offset >> 32n);
  const fl = Number(k.offset & M32);
  return String.fromCharCode(oh >>> 16, oh & 0xffff, ol >>> 16, ol & 0xffff, k.type, fh >>> 16, fh & 0xffff, fl >>> 16, fl & 0xffff);
}

export function keyFromString(ks: string): Key {
  const u = (i: number): number => ks.charCodeAt(i);
  return {
    objectid: (BigInt(((u(0) << 16) | u(1)) >>> 0) << 32n) | BigInt(((u(2) << 16) | u(3)) >>> 0),
    type: u(4),
    offset: (BigInt(((u(5) << 16) | u(6)) >>> 0) << 32n) | BigInt(((u(7) << 16) | u(8)) >>> 0),
  };
}

export function compareKeys(a: Key, b: Key): number {
  if (a.objectid !== b.objectid) return a.objectid < b.objectid ? -1 : 1;
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  if (a.offset !== b.offset) return a.offset < b.offset ? -1 : 1;
  return 0;
}

export const KEY_MIN: Key = { objectid: 0n, type: 0, offset: 0n };
export const KEY_MAX: Key = { objectid: U64_MAX, type: 255, offset: U64_MAX };

/** Packed form: u32 count, then per item 9 u16 key units, u32 length, payload. */
function pack(keys: string[], datas: Uint8Array[], bytes: number): Uint8Array {
  const out = new Uint8Array(4 + keys.length * 22 + bytes);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, keys.length, true);
  let o = 4;
  for (let i = 0; i < keys.length; i++) {
    const ks = keys[i]!;
    for (let c = 0; c < 9; c++, o += 2) dv.setUint16(o, ks.charCodeAt(c), true);
    const d = datas[i]!;
    dv.setUint32(o, d.length, true);
    out.set(d, o + 4);
    o += 4 + d.length;
  }
  return out;
}

class Page implements PageLike {
  keys: string[] | undefined;
  datas: Uint8Array[] | undefined;
  n = 0;
  bytes = 0;
  cost = 0;
  /** Hot content differs from the packed copy (or there is none). */
  dirty = true;
  /** Cold copy in memory (only without a spill backend). */
  packed: Uint8Array | undefined;
  packedLen = 0;
  /** Cold copy in the spill backend. */
  at: { slot: number; cap: number } | undefined;

  /** Smallest key the page may hold (page 0: ''); every key of the next page is greater. */
  constructor(public first: string) {}

  evict(store: PageStore): void {
    if (this.dirty) {
      const bytes = pack(this.keys!, this.datas!, this.bytes);
      this.packedLen = bytes.length;
      if (store.spill) this.at = store.spillWrite(bytes, this.at);
      else this.packed = bytes;
      this.dirty = false;
    }
    this.keys = undefined;
    this.datas = undefined;
  }
}

let defaultStore: PageStore | undefined;

export class ItemMap {
  private pages: Page[];
  private count = 0;
  private hint = 0;
  /** Total bytes of item payloads, kept so commit can size trees without a walk. */
  dataBytes = 0;

  constructor(private readonly store: PageStore = (defaultStore ??= new PageStore())) {
    const p = new Page('');
    p.keys = [];
    p.datas = [];
    this.pages = [p];
    store.touch(p);
  }

  get size(): number {
    return this.count;
  }

  get pageCount(): number {
    return this.pages.length;
  }

  get(key: Key): Uint8Array | undefined {
    const ks = keyString(key);
    const p = this.load(this.pages[this.pageIndex(ks)]!);
    const j = lowerBound(p.keys!, ks);
    return p.keys![j] === ks ? p.datas![j] : undefined;
  }

  has(key: Key): boolean {
    return this.get(key) !== undefined;
  }

  put(key: Key, data: Uint8Array): void {
    if (key.objectid < 0n || key.objectid > U64_MAX || key.offset < 0n || key.offset > U64_MAX || key.type < 0 || key.type > 255) {
      throw new RangeError(`key (${key.objectid} ${key.type} ${key.offset}) is outside the u64/u8 ranges`);
    }
    const ks = keyString(key);
    const i = this.pageIndex(ks);
    const p = this.load(this.pages[i]!);
    const keys = p.keys!;
    const j = lowerBound(keys, ks);
    if (keys[j] === ks) {
      const delta = data.length - p.datas![j]!.length;
      p.datas![j] = data;
      p.bytes += delta;
      this.dataBytes += delta;
      this.changed(p, delta);
      return;
    }
    keys.splice(j, 0, ks);
    p.datas!.splice(j, 0, data);
    p.n++;
    p.bytes += data.length;
    this.count++;
    this.dataBytes += data.length;
    this.changed(p, HOT_ITEM_OVERHEAD + data.length);
    if (p.n > PAGE_MAX_ITEMS || (p.bytes > PAGE_MAX_BYTES && p.n > 1)) this.split(i, p, j);
  }

  delete(key: Key): boolean {
    const ks = keyString(key);
    const i = this.pageIndex(ks);
    const p = this.load(this.pages[i]!);
    const j = lowerBound(p.keys!, ks);
    if (p.keys![j] !== ks) return false;
    const len = p.datas![j]!.length;
    p.keys!.splice(j, 1);
    p.datas!.splice(j, 1);
    p.n--;
    p.bytes -= len;
    this.count--;
    this.dataBytes -= len;
    this.changed(p, -(HOT_ITEM_OVERHEAD + len));
    if (p.n === 0 && this.pages.length > 1) {
      this.drop(p);
      this.pages.splice(i, 1);
      this.pages[0]!.first = '';
    }
    return true;
  }

  /**
   * Make this map a copy of `src` (same PageStore) page by page, without decoding items: a snapshot of a
   * subvolume with millions of items costs one packed copy per page, not a put per item. Whatever this
   * map held before is dropped.
   */
  copyFrom(src: ItemMap): void {
    if (src.store !== this.store) throw new RangeError('copyFrom: both maps must share one PageStore');
    for (const p of this.pages) this.drop(p);
    const pages: Page[] = [];
    for (const sp of src.pages) {
      if (sp.n === 0) continue;
      // packed copies are never changed in place (a change drops them), so a cold one can be shared
      const bytes = sp.keys ? pack(sp.keys, sp.datas!, sp.bytes) : (sp.packed ?? this.store.spillRead(sp.at!.slot, sp.packedLen));
      const q = new Page(pages.length === 0 ? '' : sp.first);
      q.n = sp.n;
      q.bytes = sp.bytes;
      q.dirty = false;
      q.packedLen = bytes.length;
      if (this.store.spill) q.at = this.store.spillWrite(bytes, undefined);
      else q.packed = bytes;
      pages.push(q);
    }
    if (pages.length === 0) {
      const p = new Page('');
      p.keys = [];
      p.datas = [];
      pages.push(p);
      this.store.touch(p);
    }
    this.pages = pages;
    this.count = src.count;
    this.dataBytes = src.dataBytes;
    this.hint = 0;
  }

  /** Items with min <= key <= max in key order (a snapshot: safe to mutate the map while using it). */
  range(min: Key = KEY_MIN, max: Key = KEY_MAX): Item[] {
    return [...this.entries(min, max)];
  }

  /** First item with key >= min (and <= max when given), without building a range. */
  first(min: Key = KEY_MIN, max: Key = KEY_MAX): Item | undefined {
    const lo = keyString(min);
    const hi = keyString(max);
    const start = this.pageIndex(lo);
    for (let i = start; i < this.pages.length; i++) {
      if (i > start && this.pages[i]!.first > hi) return undefined;
      const p = this.load(this.pages[i]!);
      const j = lowerBound(p.keys!, lo);
      if (j < p.n) {
        const ks = p.keys![j]!;
        return ks > hi ? undefined : { key: keyFromString(ks), data: p.datas![j]! };
      }
    }
    return undefined;
  }

  /** Last item with key <= max (and >= min when given). */
  last(max: Key = KEY_MAX, min: Key = KEY_MIN): Item | undefined {
    const hi = keyString(max);
    const lo = keyString(min);
    for (let i = this.pageIndex(hi); i >= 0; i--) {
      const p = this.load(this.pages[i]!);
      const j = upperBound(p.keys!, hi) - 1;
      if (j >= 0) {
        const ks = p.keys![j]!;
        return ks < lo ? undefined : { key: keyFromString(ks), data: p.datas![j]! };
      }
      // every key of the page before is below this page's first key
      if (this.pages[i]!.first <= lo) return undefined;
    }
    return undefined;
  }

  /**
   * Items with min <= key <= max in key order. The map may change while this runs: each page is
   * copied before its items are yielded and the walk resumes after the last key it gave.
   */
  *entries(min: Key = KEY_MIN, max: Key = KEY_MAX): Generator<Item> {
    let lo = keyString(min);
    const hi = keyString(max);
    let inclusive = true;
    for (;;) {
      const start = this.pageIndex(lo);
      let keys: string[] | undefined;
      let datas: Uint8Array[] | undefined;
      for (let i = start; i < this.pages.length; i++) {
        if (i > start && this.pages[i]!.first > hi) return;
        const p = this.load(this.pages[i]!);
        const j = inclusive ? lowerBound(p.keys!, lo) : upperBound(p.keys!, lo);
        if (j < p.n) {
          keys = p.keys!.slice(j);
          datas = p.datas!.slice(j);
          break;
        }
      }
      if (!keys || !datas) return;
      for (let m = 0; m < keys.length; m++) {
        const ks = keys[m]!;
        if (ks > hi) return;
        yield { key: keyFromString(ks), data: datas[m]! };
      }
      lo = keys[keys.length - 1]!;
      inclusive = false;
    }
  }

  /** Index of the page that holds (or would hold) `ks`: the last page whose first key is <= ks. */
  private pageIndex(ks: string): number {
    // receives touch the same page many times in a row (one inode's items): try the last answer first
    const pages = this.pages;
    const h = this.hint;
    if (h < pages.length && pages[h]!.first <= ks && (h + 1 === pages.length || ks < pages[h + 1]!.first)) return h;
    let lo = 1;
    let hi = pages.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pages[mid]!.first <= ks) lo = mid + 1;
      else hi = mid;
    }
    this.hint = lo - 1;
    return lo - 1;
  }

  private load(p: Page): Page {
    if (p.keys) {
      this.store.touch(p);
      return p;
    }
    const buf = p.packed ?? this.store.spillRead(p.at!.slot, p.packedLen);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const n = dv.getUint32(0, true);
    const keys: string[] = new Array<string>(n);
    const datas: Uint8Array[] = new Array<Uint8Array>(n);
    let o = 4;
    for (let i = 0; i < n; i++) {
      keys[i] = String.fromCharCode(
        dv.getUint16(o, true), dv.getUint16(o + 2, true), dv.getUint16(o + 4, true), dv.getUint16(o + 6, true),
        dv.getUint16(o + 8, true), dv.getUint16(o + 10, true), dv.getUint16(o + 12, true), dv.getUint16(o + 14, true),
        dv.getUint16(o + 16, true),
      );
      const len = dv.getUint32(o + 18, true);
      datas[i] = buf.subarray(o + 22, o + 22 + len);
      o += 22 + len;
    }
    p.keys = keys;
    p.datas = datas;
    p.cost = p.n * HOT_ITEM_OVERHEAD + p.bytes;
    this.store.charge(p, p.cost);
    return p;
  }

  /** A page leaves the map: out of the hot list, its spill slot free for reuse. */
  private drop(p: Page): void {
    this.store.forget(p);
    if (p.at) this.store.release(p.at);
  }

  private changed(p: Page, delta: number): void {
    if (p.dirty === false) {
      p.dirty = true;
      p.packed = undefined;
    }
    p.cost += delta;
    this.store.charge(p, delta);
  }

  /** Split an over-full page. Appends at the very end start a fresh page, so sorted loads fill pages. */
  private split(i: number, p: Page, insertedAt: number): void {
    let mid: number;
    if (i === this.pages.length - 1 && insertedAt === p.n - 1) mid = p.n - 1;
    else if (p.n > PAGE_MAX_ITEMS) mid = p.n >> 1;
    else {
      let acc = 0;
      mid = 0;
      while (mid < p.n - 1 && acc < p.bytes / 2) acc += p.datas![mid++]!.length;
      mid = Math.max(1, mid);
    }
    const q = new Page(p.keys![mid]!);
    q.keys = p.keys!.splice(mid);
    q.datas = p.datas!.splice(mid);
    q.n = q.keys.length;
    for (const d of q.datas) q.bytes += d.length;
    p.n -= q.n;
    p.bytes -= q.bytes;
    q.cost = q.n * HOT_ITEM_OVERHEAD + q.bytes;
    p.cost -= q.cost;
    this.pages.splice(i + 1, 0, q);
    this.store.touch(q);
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

function upperBound(arr: string[], ks: string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid]! <= ks) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
