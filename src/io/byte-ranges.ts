/**
 * A set of byte ranges [start, end) of a file, kept sorted and merged: what the rollback journal has saved
 * and what a fresh image has had written. Numbers, not image/write/ranges.ts's bigint RangeSet: it is asked
 * on every image write, and file offsets stay far below 2^53.
 */
export class ByteRanges {
  private readonly r: [number, number][] = [];

  add(start: number, end: number): void {
    let i = this.firstEndingAtOrAfter(start);
    let s = start;
    let e = end;
    let n = 0;
    while (i + n < this.r.length && this.r[i + n]![0] <= end) {
      s = Math.min(s, this.r[i + n]![0]);
      e = Math.max(e, this.r[i + n]![1]);
      n++;
    }
    // in place for the common cases (a write next to the last one): a splice makes two arrays more
    if (n === 1) {
      const x = this.r[i]!;
      x[0] = s;
      x[1] = e;
    } else if (n === 0 && i === this.r.length) this.r.push([s, e]);
    else this.r.splice(i, n, [s, e]);
  }

  /** Whether [start, end) lies inside one range of the set (no gaps: the common answer, without a generator). */
  covers(start: number, end: number): boolean {
    const i = this.firstEndingAtOrAfter(end);
    return i < this.r.length && this.r[i]![0] <= start;
  }

  /** The parts of [start, end) not in the set, in order. */
  *gaps(start: number, end: number): Generator<[number, number]> {
    let at = start;
    for (let i = this.firstEndingAtOrAfter(start + 1); i < this.r.length && at < end; i++) {
      const [s, e] = this.r[i]!;
      if (s >= end) break;
      if (s > at) yield [at, s];
      at = Math.max(at, e);
    }
    if (at < end) yield [at, end];
  }

  /** Index of the first range whose end is >= x. */
  private firstEndingAtOrAfter(x: number): number {
    let lo = 0;
    let hi = this.r.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.r[mid]![1] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
