import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';

/** Deterministic PRNG (xorshift32) so a failing seed can be replayed. */
export function rng(seed: number): { int: (n: number) => number; pick: <T>(a: readonly T[]) => T; chance: (p: number) => boolean } {
  let s = (seed * 2654435761) >>> 0 || 1;
  const next = () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
  return {
    int: (n) => Math.floor(next() * n),
    pick: (a) => a[Math.floor(next() * a.length)]!,
    chance: (p) => next() < p,
  };
}

const SECTOR = 4096;
const NAMES = ['a', 'b', 'c', 'dir x', 'd\n1', 'e\xff', 'long'.repeat(40), 'f.txt', 'g', 'h'];

/** Data that is compressible, random, or zeros, so every extent kind shows up. */
function data(r: ReturnType<typeof rng>, len: number): Buffer {
  const kind = r.int(3);
  if (kind === 0) return Buffer.alloc(len);
  if (kind === 1) {
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = r.int(256);
    return b;
  }
  const words = ['alpha ', 'beta ', 'gamma\n', 'delta ', `${r.int(1000)} `];
  let s = '';
  while (s.length < len) s += r.pick(words);
  return Buffer.from(s.slice(0, len), 'latin1');
}

interface Node { path: string; dir: boolean }

function walk(root: string): Node[] {
  const out: Node[] = [];
  const rec = (rel: string) => {
    // names are raw bytes: carry them as latin1 strings, one char per byte, and back as Buffers
    for (const name of fs.readdirSync(Buffer.from(join(root, rel), 'latin1'), { encoding: 'latin1' })) {
      const p = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(Buffer.from(join(root, p), 'latin1'));
      out.push({ path: p, dir: st.isDirectory() });
      if (st.isDirectory()) rec(p);
    }
  };
  rec('');
  return out;
}

/**
 * Applies `steps` random changes to the tree under `root` (a mounted btrfs directory): writes at any offset
 * and length, truncates, holes, preallocation, reflinks of ranges, renames (also over existing names),
 * hard links, symlinks, special files, xattrs, modes, owners and times. What the kernel then sends about
 * these changes is what the receiver must reproduce.
 */
export function mutateTree(root: string, seed: number, steps: number): void {
  const r = rng(seed);
  const P = (p: string) => Buffer.from(join(root, p), 'latin1');
  for (let i = 0; i < steps; i++) {
    const nodes = walk(root);
    const files = nodes.filter((n) => !n.dir && fs.lstatSync(P(n.path)).isFile());
    const dirs = ['', ...nodes.filter((n) => n.dir).map((n) => n.path)];
    const anyPath = () => `${r.pick(dirs) ? r.pick(dirs) + '/' : ''}${r.pick(NAMES)}`;
    const op = r.int(16);
    try {
      if (op <= 3 || files.length === 0) {
        const p = files.length && r.chance(0.6) ? r.pick(files).path : anyPath();
        const off = r.chance(0.5) ? r.int(64) * SECTOR : r.int(300_000);
        const len = r.chance(0.3) ? r.int(3000) + 1 : r.int(400_000) + 1;
        fs.closeSync(fs.openSync(P(p), 'a+'));
        const wfd = fs.openSync(P(p), 'r+');
        try {
          fs.writeSync(wfd, data(r, len), 0, len, off);
        } finally {
          fs.closeSync(wfd);
        }
      } else if (op === 4) {
        fs.truncateSync(P(r.pick(files).path), r.chance(0.5) ? r.int(500_000) : r.int(40) * SECTOR);
      } else if (op === 5) {
        const f = r.pick(files).path;
        execFileSync('fallocate', [r.chance(0.5) ? '-p' : '-n', '-o', String(r.int(40) * SECTOR + (r.chance(0.3) ? r.int(SECTOR) : 0)), '-l', String(r.int(20) * SECTOR + 1), join(root, f)].map((x) => x), { stdio: 'ignore' });
      } else if (op === 6 && files.length >= 1) {
        const src = r.pick(files).path;
        const dst = r.chance(0.5) ? r.pick(files).path : anyPath();
        const size = fs.statSync(P(src)).size;
        if (size >= SECTOR) {
          const soff = r.int(Math.floor(size / SECTOR)) * SECTOR;
          const len = Math.min(size - soff, (r.int(20) + 1) * SECTOR);
          execFileSync('xfs_io', ['-f', '-c', `reflink ${Buffer.from(join(root, src), 'latin1').toString('latin1')} ${soff} ${r.int(30) * SECTOR} ${len}`, Buffer.from(join(root, dst), 'latin1').toString('latin1')], { stdio: 'ignore' });
        }
      } else if (op === 7) {
        const from = r.pick(nodes).path;
        fs.renameSync(P(from), P(anyPath()));
      } else if (op === 8) {
        fs.linkSync(P(r.pick(files).path), P(anyPath()));
      } else if (op === 9) {
        const n = r.pick(nodes);
        if (n.dir) fs.rmSync(P(n.path), { recursive: true });
        else fs.unlinkSync(P(n.path));
      } else if (op === 10 || op >= 14) {
        const kind = op >= 14 ? 0 : r.int(4);
        const p = anyPath();
        if (kind === 0) fs.mkdirSync(P(p));
        else if (kind === 1) fs.symlinkSync(r.pick(['a', '../x y', 'z'.repeat(300)]), P(p));
        else if (kind === 2) execFileSync('mkfifo', [join(root, p)], { stdio: 'ignore' });
        else execFileSync('mknod', [join(root, p), 'c', String(r.int(10)), String(r.int(300))], { stdio: 'ignore' });
      } else if (op === 11) {
        const p = r.pick(nodes).path;
        if (r.chance(0.7)) execFileSync('setfattr', ['-h', '-n', `user.${r.pick(['k', 'long', 'x'])}`, '-v', `v${r.int(1e6)}`, join(root, p)], { stdio: 'ignore' });
        else execFileSync('setfattr', ['-h', '-x', 'user.k', join(root, p)], { stdio: 'ignore' });
      } else if (op === 12) {
        const p = r.pick(nodes).path;
        if (!fs.lstatSync(P(p)).isSymbolicLink()) fs.chmodSync(P(p), r.pick([0o644, 0o755, 0o4711, 0o1777, 0o600]));
        fs.lchownSync(P(p), r.int(3000), r.int(3000));
      } else if (op === 13) {
        const p = r.pick(nodes).path;
        const t = r.int(2_000_000_000) + r.int(1000) / 1000;
        fs.lutimesSync(P(p), t, t - r.int(100000));
      }
    } catch {
      // an operation that does not apply (rename onto a non-empty dir, name too long, ...) is skipped
    }
  }
}
