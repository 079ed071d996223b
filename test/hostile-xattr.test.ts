import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BtrfsTsError } from '../src/errors.js';
import { checkXattrValue } from '../src/receive/limits.js';
import { tmpDir } from './image-write-helpers.js';

/**
 * The receiver refuses POSIX ACL and file-capability xattr values the kernel's setxattr refuses (the
 * kernel's own receive fails on them; an image holding them anyway makes the kernel fail, e.g. every file
 * creation under a garbage default ACL is an I/O error). Oracle: the running kernel's setxattr, on
 * thousands of generated values (valid ACLs in every shape, and mutations of them).
 */
const PY = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import os; os.setxattr']).status === 0);
const root = process.getuid?.() === 0;
const why = !PY ? 'no python3 with os.setxattr' : !root ? 'not root (security.capability needs CAP_SETFCAP)' : undefined;
if (why) console.warn(`SKIP xattr value differential test against the kernel: ${why}`);
const work = tmpDir('btrfs-ts-xattr-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const TAGS = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20];

function acl(entries: [number, number, number][], version = 2): Uint8Array {
  const b = Buffer.alloc(4 + entries.length * 8);
  b.writeUInt32LE(version, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + i * 8);
    b.writeUInt16LE(perm, 6 + i * 8);
    b.writeUInt32LE(id >>> 0, 8 + i * 8);
  });
  return b;
}

function candidates(): [string, Uint8Array][] {
  let x = 12345;
  const r = () => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const out: [string, Uint8Array][] = [];
  for (let i = 0; i < 1500; i++) {
    // a valid shape: USER_OBJ, users, GROUP_OBJ, groups, [MASK], OTHER
    const users = Math.floor(r() * 3);
    const groups = Math.floor(r() * 3);
    const e: [number, number, number][] = [[0x01, 7, -1]];
    for (let u = 0; u < users; u++) e.push([0x02, Math.floor(r() * 8), 1000 + u]);
    e.push([0x04, 5, -1]);
    for (let g = 0; g < groups; g++) e.push([0x08, Math.floor(r() * 8), 2000 + g]);
    if (users + groups > 0 || r() < 0.5) e.push([0x10, 7, -1]);
    e.push([0x20, 4, -1]);
    // then break it, sometimes
    const k = r();
    if (k < 0.15) e.splice(Math.floor(r() * e.length), 1);
    else if (k < 0.3) e[Math.floor(r() * e.length)]![0] = TAGS[Math.floor(r() * TAGS.length)]!;
    else if (k < 0.4) e[Math.floor(r() * e.length)]![1] = Math.floor(r() * 16);
    else if (k < 0.5) e.push(e[Math.floor(r() * e.length)]!);
    else if (k < 0.55) e[Math.floor(r() * e.length)]![0] = Math.floor(r() * 0x40);
    let v = acl(e, r() < 0.05 ? 1 : 2);
    if (r() < 0.05) v = v.subarray(0, Math.floor(r() * v.length));
    out.push([r() < 0.5 ? 'system.posix_acl_access' : 'system.posix_acl_default', v]);
  }
  for (let i = 0; i < 300; i++) {
    const len = [0, 4, 12, 20, 24, 28][Math.floor(r() * 6)]!;
    const v = Buffer.alloc(len);
    for (let j = 0; j < len; j++) v[j] = Math.floor(r() * 256);
    if (len >= 4) v.writeUInt32LE(((Math.floor(r() * 4)) << 24) | (r() < 0.5 ? 1 : 0), 0);
    out.push(['security.capability', v]);
  }
  out.push(['system.posix_acl_access', acl([], 2)]);
  return out;
}

describe.skipIf(!!why)('xattr values the kernel interprets: refused exactly when the kernel refuses them', () => {
  it('POSIX ACLs and file capabilities, against the kernel\'s setxattr', () => {
    const vals = candidates();
    const json = join(work, 'vals.json');
    writeFileSync(json, JSON.stringify(vals.map(([n, v]) => [n, Buffer.from(v).toString('hex')])));
    const script = `
import os, sys, json
d, vals = sys.argv[1], json.load(open(sys.argv[2]))
f = os.path.join(d, 'f'); open(f, 'w').close()
dd = os.path.join(d, 'dir'); os.makedirs(dd, exist_ok=True)
out = []
for name, hexv in vals:
    target = dd if name.endswith('default') else f
    try:
        os.setxattr(target, name, bytes.fromhex(hexv)); out.append(True); os.removexattr(target, name)
    except OSError as e:
        out.append(e.errno)
print(json.dumps(out))`;
    const r = spawnSync(PY!, ['-c', script, work, json], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const kernel = JSON.parse(r.stdout) as (true | number)[];
    // refusals are EINVAL, or EOPNOTSUPP for an ACL header of another version
    for (const k of kernel) if (k !== true) expect([22, 95]).toContain(k);
    const mismatches: string[] = [];
    let accepted = 0;
    vals.forEach(([name, v], i) => {
      let ours = true;
      try {
        checkXattrValue(new TextEncoder().encode(name), v);
      } catch (e) {
        if (!(e instanceof BtrfsTsError)) throw e;
        ours = false;
      }
      if (ours) accepted++;
      if (ours !== (kernel[i] === true)) mismatches.push(`${name} ${Buffer.from(v).toString('hex')}: kernel ${kernel[i] === true ? 'accepts' : 'refuses'}`);
    });
    expect(mismatches.slice(0, 10)).toEqual([]);
    // both kinds occur in numbers
    expect(accepted).toBeGreaterThan(300);
    expect(vals.length - accepted).toBeGreaterThan(300);
  });
});
