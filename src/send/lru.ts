/**
 * A Map that keeps at most `limit` entries, dropping the least recently used: the sender's caches
 * (names, generations, shared extents) stay bounded whatever the subvolume's size.
 */
export class LruMap<K, V> {
  private readonly map = new Map<K, V>();

  constructor(private readonly limit: number) {}

  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.limit) this.map.delete(this.map.keys().next().value as K);
  }

  delete(k: K): void {
    this.map.delete(k);
  }
}
