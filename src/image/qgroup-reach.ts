/**
 * What a quota rescan counts, for the writer's trees (mkfs -R quota, write/qgroup-count.ts) and the
 * reader's (qgroup show, quota rescan: tools/qgroup-usage.ts) alike: which subvolumes reach each tree block
 * and each data extent. The trees are walked together, level by level from the top, so a block shared by
 * many snapshots is read once, with the set of subvolumes reaching it (its parents' sets joined); the
 * caller reads each block `blocks()` hands out and reports its children or its file extents before taking
 * the next. A subvolume refers to what it reaches (a tree block nodesize bytes, a data extent its
 * disk_num_bytes, whole however little of it is referenced) and holds exclusively what it alone reaches.
 */

/** A set of subvolume ids, kept once (most blocks of a chain of snapshots share a handful of sets). */
export interface ReachSet {
  readonly ids: readonly bigint[];
  /** Its number: the union of two is looked up by theirs. */
  readonly n: number;
}

export class ReachPass {
  private readonly sets = new Map<string, ReachSet>();
  private readonly unions = new Map<number, Map<number, ReachSet>>();
  private readonly pending: Map<bigint, { generation: bigint; owner: bigint; reach: ReachSet }>[] = Array.from({ length: 8 }, () => new Map());
  private current: ReachSet | undefined;
  /** Every tree block and data extent reached: its bytes and who reaches it. */
  readonly extents = new Map<bigint, { bytes: bigint; reach: ReachSet }>();

  constructor(private readonly nodesize: bigint) {}

  /** Subvolume `id`'s tree, rooted at `bytenr`. */
  addRoot(id: bigint, bytenr: bigint, level: number, generation: bigint): void {
    this.enqueue(level, bytenr, generation, id, this.intern([id]));
  }

  /** The blocks to read, every one of a level before the level below; report each before the next. */
  *blocks(): Generator<{ bytenr: bigint; level: number; generation: bigint; owner: bigint }> {
    for (let level = this.pending.length - 1; level >= 0; level--) {
      for (const [bytenr, b] of this.pending[level]!) {
        this.extents.set(bytenr, { bytes: this.nodesize, reach: b.reach });
        this.current = b.reach;
        yield { bytenr, level, generation: b.generation, owner: b.owner };
      }
      this.pending[level]!.clear();
    }
  }

  /** A child of the node `blocks()` handed out last (at `level`). */
  child(level: number, bytenr: bigint, generation: bigint, owner: bigint): void {
    this.enqueue(level - 1, bytenr, generation, owner, this.current!);
  }

  /** A data extent a file extent item of the leaf handed out last points at. */
  dataExtent(diskBytenr: bigint, diskNumBytes: bigint): void {
    const x = this.extents.get(diskBytenr);
    this.extents.set(diskBytenr, { bytes: diskNumBytes, reach: this.join(x?.reach, this.current!) });
  }

  /** Referenced and exclusive bytes of each subvolume in `ids`. */
  subvolumeCounts(ids: readonly bigint[]): Map<bigint, { referenced: bigint; exclusive: bigint }> {
    const out = new Map(ids.map((id) => [id, { referenced: 0n, exclusive: 0n }]));
    for (const { bytes, reach } of this.extents.values()) {
      for (const id of reach.ids) {
        const c = out.get(id);
        if (!c) continue;
        c.referenced += bytes;
        if (reach.ids.length === 1) c.exclusive += bytes;
      }
    }
    return out;
  }

  private enqueue(level: number, bytenr: bigint, generation: bigint, owner: bigint, reach: ReachSet): void {
    const p = this.pending[level]!;
    p.set(bytenr, { generation, owner, reach: this.join(p.get(bytenr)?.reach, reach) });
  }

  private intern(ids: bigint[]): ReachSet {
    const key = ids.join(',');
    let s = this.sets.get(key);
    if (!s) this.sets.set(key, (s = { ids, n: this.sets.size }));
    return s;
  }

  private join(a: ReachSet | undefined, b: ReachSet): ReachSet {
    if (!a || a === b) return b;
    const [lo, hi] = a.n < b.n ? [a, b] : [b, a];
    let m = this.unions.get(lo.n);
    if (!m) this.unions.set(lo.n, (m = new Map()));
    let u = m.get(hi.n);
    if (!u) m.set(hi.n, (u = this.intern([...new Set([...a.ids, ...b.ids])].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)))));
    return u;
  }
}
