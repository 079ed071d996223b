import { InvalidArgumentError } from 'commander';
import type { SubvolumeInfo } from '../image/read/index.js';
import { BTRFS_FS_TREE_OBJECTID } from '../image/structs/constants.js';
import { progsLocalTime, uuidOrDash } from './progs-format.js';

/**
 * `btrfs subvolume list` with btrfs-progs' options, in its words and layout (cmds/subvolume-list.c): the
 * columns each option adds, its filters, `--sort`, `-t`'s table, and the paths it prints — relative to
 * the subvolume holding PATH for the subvolumes below it (the mount point btrfs is given), from the top
 * level otherwise; `-o` and `-a` print them from the top level, `-a` with "<FS_TREE>/" before those that
 * do not sit directly in that subvolume.
 */

export interface ListOptions {
  p?: boolean; a?: boolean; c?: boolean; d?: boolean; g?: boolean; o?: boolean; t?: boolean; s?: boolean;
  u?: boolean; q?: boolean; R?: boolean; readonly?: boolean; G?: GenFilter; C?: GenFilter; sort?: SortKey[];
}

/** Whether btrfs-progs' listing was asked for (any of its options but -r, or a PATH). */
export function wantsProgsList(o: ListOptions, path: string | undefined): boolean {
  return path !== undefined || !!(o.p || o.a || o.c || o.d || o.g || o.o || o.t || o.s || o.u || o.q || o.R || o.G || o.C || o.sort);
}

export interface GenFilter { op: '>=' | '<=' | '=='; value: bigint }

/** -G/-C: "+N" (at least N), "-N" (at most N), "N" (exactly N). */
export function parseGenFilter(v: string): GenFilter {
  const m = /^([+-]?)(\d+)$/.exec(v);
  if (!m) throw new InvalidArgumentError('expected [+|-]NUMBER');
  return { op: m[1] === '+' ? '>=' : m[1] === '-' ? '<=' : '==', value: BigInt(m[2]!) };
}

export interface SortKey { key: 'rootid' | 'gen' | 'ogen' | 'path'; desc: boolean }

/** --sort=rootid,gen,ogen,path, each with an optional + (ascending, the default) or - (descending). */
export function parseSort(v: string): SortKey[] {
  return v.split(',').map((part) => {
    const m = /^([+-]?)(rootid|gen|ogen|path)$/.exec(part);
    if (!m) throw new InvalidArgumentError('expected rootid, gen, ogen or path, each with an optional + or -, comma-separated');
    return { key: m[2] as SortKey['key'], desc: m[1] === '-' };
  });
}

type Column = 'ID' | 'gen' | 'cgen' | 'parent' | 'top level' | 'otime' | 'parent_uuid' | 'received_uuid' | 'uuid' | 'path';
const ORDER: Column[] = ['ID', 'gen', 'cgen', 'parent', 'top level', 'otime', 'parent_uuid', 'received_uuid', 'uuid', 'path'];

const uuidCol = (u: Uint8Array): string => uuidOrDash(u).padEnd(36);

/** resolve_root: the path from subvolume `topId` when it holds `sv` (at any depth), else from the top level. */
function pathFrom(sv: SubvolumeInfo, topId: bigint, byId: Map<bigint, SubvolumeInfo>): string {
  if (topId !== BTRFS_FS_TREE_OBJECTID) {
    for (let p = byId.get(sv.parent), hops = 0; p && hops < 4096; p = byId.get(p.parent), hops++) {
      if (p.id === topId) return sv.path.slice(p.path.length + 1);
      if (p.id === BTRFS_FS_TREE_OBJECTID) break;
    }
  }
  return sv.path;
}

function compare(a: SubvolumeInfo, b: SubvolumeInfo, keys: SortKey[], paths: Map<bigint, string>): number {
  for (const k of keys) {
    let c = 0;
    if (k.key === 'path') c = Buffer.compare(Buffer.from(paths.get(a.id)!), Buffer.from(paths.get(b.id)!));
    else {
      const [x, y] = k.key === 'rootid' ? [a.id, b.id] : k.key === 'gen' ? [a.generation, b.generation] : [a.otransid, b.otransid];
      c = x < y ? -1 : x > y ? 1 : 0;
    }
    if (c !== 0) return k.desc ? -c : c;
  }
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

const passes = (f: GenFilter | undefined, v: bigint): boolean =>
  !f || (f.op === '>=' ? v >= f.value : f.op === '<=' ? v <= f.value : v === f.value);

/**
 * The listing as btrfs-progs prints it of `listed` (listSubvolumes, or deletedSubvolumes for -d), `topId`
 * being the subvolume holding the PATH given.
 */
export function progsList(listed: SubvolumeInfo[], topId: bigint, o: ListOptions): string {
  const cols = new Set<Column>(['ID', 'gen', 'top level', 'path']);
  if (o.c || o.s || o.C) cols.add('cgen');
  if (o.p) cols.add('parent');
  if (o.s) cols.add('otime');
  if (o.q) cols.add('parent_uuid');
  if (o.R) cols.add('received_uuid');
  if (o.u) cols.add('uuid');
  const shown = ORDER.filter((c) => cols.has(c));
  const byId = new Map(listed.map((s) => [s.id, s]));
  const paths = new Map<bigint, string>();
  for (const s of listed) {
    const full = o.a || o.o;
    let p = full || o.d ? s.path : pathFrom(s, topId, byId);
    if (o.a && s.parent !== topId) p = `<FS_TREE>/${p}`;
    paths.set(s.id, p);
  }
  const rows = listed
    .filter((s) => s.id !== BTRFS_FS_TREE_OBJECTID)
    .filter((s) => !o.readonly || s.readonly)
    .filter((s) => !o.s || s.snapshot)
    .filter((s) => passes(o.G, s.generation) && passes(o.C, s.otransid))
    .filter((s) => o.a || !o.o || s.parent === topId)
    .sort((a, b) => compare(a, b, o.sort ?? [], paths));
  const value = (s: SubvolumeInfo, c: Column): string => {
    switch (c) {
      case 'ID': return String(s.id);
      case 'gen': return String(s.generation);
      case 'cgen': return String(s.otransid);
      case 'parent': return String(s.parent);
      case 'top level': return String(s.parent);
      case 'otime': return progsLocalTime(s.otime.sec, false);
      case 'parent_uuid': return uuidCol(s.parentUuid);
      case 'received_uuid': return uuidCol(s.receivedUuid);
      case 'uuid': return uuidCol(s.uuid);
      case 'path': return paths.get(s.id)!;
    }
  };
  const out: string[] = [];
  if (o.t) {
    out.push(shown.map((c) => `${c}\t`).join(''), shown.map((c) => `${'-'.repeat(c.length)}\t`).join(''));
    for (const s of rows) out.push(shown.map((c) => value(s, c) + (c === 'path' ? '' : c === 'top level' ? '\t\t' : '\t')).join(''));
  } else {
    for (const s of rows) out.push(shown.map((c) => `${c} ${value(s, c)}${c === 'path' ? '' : ' '}`).join(''));
  }
  return out.map((l) => `${l}\n`).join('');
}
