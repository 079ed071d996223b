/**
 * The kernel's delayed directory utimes (fs/btrfs/send.c cache_dir_utimes, since 6.3): a non-empty
 * directory's UTIMES is held back while entries may still be added to it, at most 64 directories at a
 * time. A directory already held is only moved to the most recent end; when more than 64 are held the
 * least recent is sent; at the end of the subvolume the rest are sent, most recent first. Reproducing this
 * keeps the stream as small as the kernel's (one UTIMES per directory instead of one per entry added).
 */
export const SEND_MAX_DIR_UTIMES_CACHE_SIZE = 64;

export class DirUtimesCache {
  /** Insertion order = recency: the first key is the least recently used. */
  private readonly dirs = new Set<bigint>();

  /** Holds back `dir`'s UTIMES (or refreshes its recency). */
  touch(dir: bigint): void {
    this.dirs.delete(dir);
    this.dirs.add(dir);
  }

  /** Directories to send now because the cache is over its size, least recent first. */
  trim(): bigint[] {
    const out: bigint[] = [];
    while (this.dirs.size > SEND_MAX_DIR_UTIMES_CACHE_SIZE) {
      const lru = this.dirs.values().next().value as bigint;
      this.dirs.delete(lru);
      out.push(lru);
    }
    return out;
  }

  /** Everything still held, most recent first (the kernel's flush walks its LRU list backwards). */
  flush(): bigint[] {
    const out = [...this.dirs].reverse();
    this.dirs.clear();
    return out;
  }
}
