/**
 * Memory budget for the item maps of one Filesystem.
 *
 * Items live in pages (item-map.ts). A page is either hot — decoded into arrays the map can search and
 * edit — or cold: packed into one byte string, kept in memory or, when a spill backend is given, written to
 * it and dropped. The store keeps the hot pages in least-recently-used order and turns the oldest cold once
 * their estimated cost passes the budget. With a spill backend the metadata of a receive no longer grows
 * the process: a stream of millions of files keeps only the pages it is touching (the rest is re-read from
 * the spill file, usually from the host's page cache). Without one, cold pages still cost ~25 bytes per
 * item plus payload instead of ~300 for decoded items.
 */

/** Positional storage for cold pages (src/io/spill-file.ts on a temporary file; tests use memory). */
export interface SpillBackend {
  write(offset: number, bytes: Uint8Array): void;
  read(offset: number, len: number): Uint8Array;
}

/**
 * What one hot item costs beyond its payload: key string, Uint8Array and ArrayBuffer objects, the backing
 * store record, array slots (heap snapshots of a receive: ~300 bytes on 64-bit node without pointer
 * compression).
 */
export const HOT_ITEM_OVERHEAD = 320;

export interface PageLike {
  /** Estimated bytes while hot (0 when cold); maintained by the item map. */
  cost: number;
  /** Turn cold: pack (if changed) and drop the decoded arrays. */
  evict(store: PageStore): void;
}

export interface PageStoreOptions {
  /** Estimated bytes of hot pages to keep (default 48 MiB). */
  budget?: number;
  spill?: SpillBackend;
}

export class PageStore {
  readonly budget: number;
  readonly spill: SpillBackend | undefined;
  hotBytes = 0;
  /** Oldest first (Set iteration order is insertion order). */
  private readonly hot = new Set<PageLike>();
  private newest: PageLike | undefined;
  private spillEnd = 0;
  /** Reusable spill slots by capacity, so a page evicted again and again does not grow the file. */
  private readonly freeSlots = new Map<number, number[]>();
  readonly stats = { evictions: 0, spillWrites: 0, spillBytes: 0, spillReads: 0 };

  constructor(opts: PageStoreOptions = {}) {
    this.budget = opts.budget ?? 48 << 20;
    this.spill = opts.spill;
  }

  /** Mark `p` most recently used (it must be hot). */
  touch(p: PageLike): void {
    if (this.newest === p) return;
    this.hot.delete(p);
    this.hot.add(p);
    this.newest = p;
  }

  /** A page became hot or changed cost by `delta`; evicts older pages when over budget. */
  charge(p: PageLike, delta: number): void {
    this.hotBytes += delta;
    this.touch(p);
    if (this.hotBytes > this.budget) this.shrink(p);
  }

  /** Forget a page that left its map (merged away or the map dropped). */
  forget(p: PageLike): void {
    if (this.hot.delete(p)) this.hotBytes -= p.cost;
    if (this.newest === p) this.newest = undefined;
  }

  private shrink(keep: PageLike): void {
    // evict down to 7/8 of the budget so evictions come in batches, not one per insert
    const target = this.budget - (this.budget >> 3);
    for (const p of this.hot) {
      if (this.hotBytes <= target) break;
      if (p === keep) continue;
      this.hot.delete(p);
      this.hotBytes -= p.cost;
      p.evict(this);
      p.cost = 0;
      this.stats.evictions++;
    }
  }

  /** Write a packed page to the spill backend; returns its slot (reused when `old` is large enough). */
  spillWrite(bytes: Uint8Array, old: { slot: number; cap: number } | undefined): { slot: number; cap: number } {
    const spill = this.spill!;
    let at = old;
    if (!at || at.cap < bytes.length) {
      if (at) this.release(at);
      const cap = slotCapacity(bytes.length);
      const reuse = this.freeSlots.get(cap)?.pop();
      if (reuse !== undefined) at = { slot: reuse, cap };
      else {
        at = { slot: this.spillEnd, cap };
        this.spillEnd += cap;
      }
    }
    spill.write(at.slot, bytes);
    this.stats.spillWrites++;
    this.stats.spillBytes += bytes.length;
    return at;
  }

  spillRead(slot: number, len: number): Uint8Array {
    this.stats.spillReads++;
    return this.spill!.read(slot, len);
  }

  release(at: { slot: number; cap: number }): void {
    let list = this.freeSlots.get(at.cap);
    if (!list) this.freeSlots.set(at.cap, (list = []));
    list.push(at.slot);
  }

  /** Bytes the spill file has grown to (its high-water mark). */
  get spillSize(): number {
    return this.spillEnd;
  }
}

/** Slots come in 4 KiB steps up to 64 KiB, then powers of two: few distinct sizes, so reuse is likely. */
function slotCapacity(len: number): number {
  if (len <= 65536) return Math.max(4096, Math.ceil(len / 4096) * 4096);
  let cap = 131072;
  while (cap < len) cap *= 2;
  return cap;
}
