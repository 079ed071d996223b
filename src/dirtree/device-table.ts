import * as fs from 'node:fs';
import { ImageError } from '../errors.js';

/**
 * genext2fs / makedevs device tables (mkfs -D FILE), so that an unprivileged user can build an image of a
 * root-owned tree with device nodes:
 *
 *     # path        type mode uid gid major minor start inc count
 *     /dev          d    755  0   0   -     -     -     -   -
 *     /dev/console  c    600  0   5   5     1     -     -   -
 *     /dev/tty      c    666  0   0   4     0     0     1   4     (tty0 .. tty3, minors 0..3)
 *
 * A path that exists in the rootdir takes the table's permissions and owner (its type must match); a
 * missing one of type d, c, b or p is created (its parent must exist by then). Type f must exist.
 */
export interface DeviceEntry {
  /** Path relative to the rootdir, '/'-separated, as bytes in latin1 (the walk's key). */
  rel: string;
  type: 'f' | 'd' | 'c' | 'b' | 'p';
  /** Permission bits (07777). */
  perm: number;
  uid: number;
  gid: number;
  major: number;
  minor: number;
}

const S_IF: Record<DeviceEntry['type'], number> = { f: 0o100000, d: 0o040000, c: 0o020000, b: 0o060000, p: 0o010000 };
export const deviceModeType = (t: DeviceEntry['type']): number => S_IF[t];

export function parseDeviceTable(file: string): Map<string, DeviceEntry> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ImageError('MKFS_DEVICE_TABLE', `-D: cannot read ${file}: ${(err as Error).message}`);
  }
  const out = new Map<string, DeviceEntry>();
  text.split('\n').forEach((line, i) => {
    const f = line.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean);
    if (f.length === 0) return;
    const bad = (why: string): never => {
      throw new ImageError('MKFS_DEVICE_TABLE', `-D ${file}:${i + 1}: ${why}`);
    };
    if (f.length !== 10) bad(`expected 10 fields (path type mode uid gid major minor start inc count), got ${f.length}`);
    const num = (s: string, what: string, base = 10): number => {
      if (s === '-') return 0;
      const v = Number.parseInt(s, base);
      if (!/^\d+$/.test(s) || !Number.isSafeInteger(v)) bad(`${what} ${JSON.stringify(s)} is not a number`);
      return v;
    };
    const [p, t] = [f[0]!, f[1]!];
    if (!'fdcbp'.includes(t) || t.length !== 1) bad(`type ${JSON.stringify(t)} is not one of f d c b p`);
    const perm = num(f[2]!, 'mode', 8);
    if (perm > 0o7777) bad(`mode ${f[2]} has more than permission bits`);
    const rel = p.split('/').filter((x) => x && x !== '.');
    if (rel.includes('..')) bad(`path ${JSON.stringify(p)} is not inside the rootdir`);
    if (rel.length === 0 && t !== 'd') bad('the rootdir itself is a directory');
    const base: Omit<DeviceEntry, 'rel'> = {
      type: t as DeviceEntry['type'], perm, uid: num(f[3]!, 'uid'), gid: num(f[4]!, 'gid'), major: num(f[5]!, 'major'), minor: num(f[6]!, 'minor'),
    };
    const count = num(f[9]!, 'count');
    const key = (name: string): string => Buffer.from(name, 'utf8').toString('latin1');
    if (count === 0) {
      out.set(key(rel.join('/')), { rel: key(rel.join('/')), ...base });
      return;
    }
    if (t !== 'c' && t !== 'b') bad('start/inc/count apply to device nodes (c, b) only');
    const start = num(f[7]!, 'start'), inc = num(f[8]!, 'inc');
    for (let k = 0; k < count; k++) {
      const r = key(`${rel.join('/')}${start + k}`);
      out.set(r, { rel: r, ...base, minor: base.minor + k * inc });
    }
  });
  return out;
}
