import { QGROUP_LEVEL_SHIFT, type QgroupRow } from '../tools/qgroup-usage.js';
import { prettySize } from './subvolume-show.js';

/** The columns `btrfs qgroup show` (btrfs-progs 6.2) can print, in its order; the first three and Path by default. */
export interface QgroupColumns {
  parent?: boolean;
  child?: boolean;
  maxReferenced?: boolean;
  maxExclusive?: boolean;
  raw?: boolean;
}

const BTRFS_QGROUP_LIMIT_MAX_RFER = 1n;
const BTRFS_QGROUP_LIMIT_MAX_EXCL = 2n;

const id = (q: bigint): string => `${q >> QGROUP_LEVEL_SHIFT}/${q & ((1n << QGROUP_LEVEL_SHIFT) - 1n)}`;

interface Column {
  name: string;
  /** Left-aligned (ids) or right-aligned (sizes). */
  left: boolean;
  /** progs' starting width, grown to the widest value. */
  width: number;
  cell(r: QgroupRow): string;
  /** What the width is measured on, where that is not the cell (a limit's size, even when "none" is printed). */
  measure?(r: QgroupRow): string;
}

/**
 * The table `btrfs qgroup show` prints for `rows`, byte for byte (cmds/qgroup.c: print_table_head,
 * print_single_qgroup_table, print_path_column): widths grown to the widest value, a trailing space
 * after each head column, "<toplevel>", "<stale>" and "<N member qgroups>" in the path column.
 */
export function formatQgroupShow(rows: readonly QgroupRow[], o: QgroupColumns = {}): string {
  const size = (n: bigint): string => (o.raw ? String(n) : prettySize(n));
  const byId = new Map(rows.map((r) => [r.qgroupid, r]));
  const limit = (r: QgroupRow, flag: bigint, v: bigint): string => (r.limit && (r.limit.flags & flag) !== 0n ? size(v) : 'none');
  const columns: Column[] = [
    { name: 'Qgroupid', left: true, width: 9, cell: (r) => id(r.qgroupid) },
    { name: 'Referenced', left: false, width: 12, cell: (r) => size(r.referenced) },
    { name: 'Exclusive', left: false, width: 12, cell: (r) => size(r.exclusive) },
    ...(o.maxReferenced ? [{ name: 'Max referenced', left: false, width: 15, cell: (r: QgroupRow) => limit(r, BTRFS_QGROUP_LIMIT_MAX_RFER, r.limit?.maxReferenced ?? 0n), measure: (r: QgroupRow) => size(r.limit?.maxReferenced ?? 0n) }] : []),
    ...(o.maxExclusive ? [{ name: 'Max exclusive', left: false, width: 14, cell: (r: QgroupRow) => limit(r, BTRFS_QGROUP_LIMIT_MAX_EXCL, r.limit?.maxExclusive ?? 0n), measure: (r: QgroupRow) => size(r.limit?.maxExclusive ?? 0n) }] : []),
    ...(o.parent ? [{ name: 'Parent', left: true, width: 8, cell: (r: QgroupRow) => r.parents.map(id).join(',') || '-', measure: (r: QgroupRow) => r.parents.map(id).join(',') }] : []),
    ...(o.child ? [{ name: 'Child', left: true, width: 5, cell: (r: QgroupRow) => r.members.map(id).join(',') || '-', measure: (r: QgroupRow) => r.members.map(id).join(',') }] : []),
  ];
  for (const c of columns) for (const r of rows) c.width = Math.max(c.width, (c.measure ?? c.cell)(r).length);
  const pad = (c: Column, s: string): string => (c.left ? s.padEnd(c.width) : s.padStart(c.width));
  let out = columns.map((c) => `${pad(c, c.name)} `).join('') + `${'Path'.padStart(6)} \n`;
  out += columns.map((c) => `${pad(c, '-'.repeat(c.name.length))} `).join('') + `${'----'.padStart(6)} \n`;
  for (const r of rows) {
    let path: string;
    if (r.qgroupid >> QGROUP_LEVEL_SHIFT > 0n) {
      // progs lists the groups this one belongs to here, each by its path where it is a subvolume's
      const names = r.parents.map((p) => (p >> QGROUP_LEVEL_SHIFT === 0n ? byId.get(p)?.path ?? '<stale>' : id(p)));
      // (with one, progs prints a NUL where the plural's "s" would be)
      path = `${names.join(' ')}<${names.length} member qgroup${names.length !== 1 ? 's' : '\0'}>`;
    } else {
      path = r.path === undefined ? '<stale>' : r.path || '<toplevel>';
    }
    out += columns.map((c) => pad(c, c.cell(r))).join(' ') + `   ${path}\n`;
  }
  return out;
}
