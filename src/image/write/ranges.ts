/**
 * Set of disjoint half-open [start, end) bigint ranges kept sorted and coalesced. Used for free space
 * (data allocation, metadata allocation at commit, free space tree derivation) and for device extents.
 */
export class RangeSet {
  private starts: bigint[] = [];
  private ends: bigint[] = [];

  static of(ranges: Iterable<[bigint, bigint]>): RangeSet {
    const s = new RangeSet();
    for (const [a, b] of ranges) s.add(a, b);
    return s;
  }

  clone(): RangeSet {
    const s = new RangeSet();
    s.starts = this.starts.slice();
    s.ends = this.ends.slice();
    return s;
  }

  get count(): number {
    return this.starts.length;
  }

  *[Symbol.iterator](): IterableIterator<[bigint, bigint]> {
    for (let i = 0; i < this.starts.length; i++) yield [this.starts[i]!, this.ends[i]!];
  }

  total(): bigint {
    let t = 0n;
    for (let i = 0; i < this.starts.length; i++) t += this.ends[i]! - this.starts[i]!;
    return t;
  }

  /** Index of the first range whose end is > pos. */
  private find(pos: bigint): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid]! <= pos) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // add and remove change the arrays in place where they can: a receive adds and removes a range per
  // extent (allocation, checksums touched), most of them next to the last one, and splice with spread
  // pieces made three arrays per call
  add(start: bigint, end: bigint): void {
    if (end <= start) return;
    const starts = this.starts;
    const ends = this.ends;
    let i = this.find(start);
    // merge with a range that ends exactly at start
    if (i > 0 && ends[i - 1] === start) i--;
    let j = i;
    let s = start;
    let e = end;
    while (j < starts.length && starts[j]! <= e) {
      if (starts[j]! < s) s = starts[j]!;
      if (ends[j]! > e) e = ends[j]!;
      j++;
    }
    if (j === i + 1) {
      starts[i] = s;
      ends[i] = e;
    } else if (j === i && i === starts.length) {
      starts.push(s);
      ends.push(e);
    } else {
      starts.splice(i, j - i, s);
      ends.splice(i, j - i, e);
    }
  }

  remove(start: bigint, end: bigint): void {
    if (end <= start) return;
    const starts = this.starts;
    const ends = this.ends;
    let i = this.find(start);
    if (i < starts.length && starts[i]! < start) {
      const e = ends[i]!;
      if (e > end) {
        // inside one range: it becomes two
        starts.splice(i + 1, 0, end);
        ends.splice(i + 1, 0, e);
        ends[i] = start;
        return;
      }
      ends[i] = start;
      i++;
    }
    // the ranges from i start at or after `start`: those ending by `end` go, one reaching past it is cut
    let j = i;
    while (j < starts.length && ends[j]! <= end) j++;
    if (j > i) {
      starts.splice(i, j - i);
      ends.splice(i, j - i);
    }
    if (i < starts.length && starts[i]! < end) starts[i] = end;
  }

  /** True when [start, end) lies entirely inside one range of the set. */
  contains(start: bigint, end: bigint): boolean {
    const i = this.find(start);
    return i < this.starts.length && this.starts[i]! <= start && this.ends[i]! >= end;
  }

  /** True when [start, end) touches any range of the set. */
  overlaps(start: bigint, end: bigint): boolean {
    const i = this.find(start);
    return i < this.starts.length && this.starts[i]! < end;
  }

  /**
   * First-fit: lowest `align`-aligned start where `len` bytes are free within [min, max), or undefined.
   * Does not remove the range (callers decide).
   */
  findFree(len: bigint, align: bigint, min = 0n, max = 1n << 64n): bigint | undefined {
    for (let i = this.find(min); i < this.starts.length; i++) {
      let s = this.starts[i]! < min ? min : this.starts[i]!;
      s = ((s + align - 1n) / align) * align;
      const e = this.ends[i]! < max ? this.ends[i]! : max;
      if (s + len <= e) return s;
      if (this.starts[i]! >= max) break;
    }
    return undefined;
  }

  /** Intersection with [start, end) as a new set. */
  slice(start: bigint, end: bigint): RangeSet {
    const out = new RangeSet();
    for (let i = this.find(start); i < this.starts.length && this.starts[i]! < end; i++) {
      out.add(this.starts[i]! < start ? start : this.starts[i]!, this.ends[i]! > end ? end : this.ends[i]!);
    }
    return out;
  }
}
