import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, parse } from 'node:path';

/**
 * The CLI as another user can run it. The checkout may sit in a folder only its owner can enter (a clone
 * under /root, a `mktemp -d`), so a test that drops privileges cannot run `<checkout>/bin/btrfs-ts.js`.
 * This copies what the installed package holds — bin/, dist/, package.json and the runtime dependencies
 * from node_modules (followed through their own package.json) — into a world-readable temporary folder.
 */
const ROOT = join(import.meta.dirname, '..', '..');

/** Every ancestor of `dir` must let others pass (o+x), or the copy would be as unreachable as the checkout. */
function othersCanReach(dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return d;
    if (d === parse(d).root) return undefined;
  }
}

function runtimeDeps(pkgDir: string, into: Set<string>): void {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  for (const name of Object.keys(pkg.dependencies ?? {})) {
    if (into.has(name)) continue;
    into.add(name);
    runtimeDeps(join(ROOT, 'node_modules', name), into);
  }
}

export interface ReachableCli {
  /** Absolute path of bin/btrfs-ts.js in the copy. */
  bin: string;
  remove(): void;
}

/** Copies the built CLI (needs dist/) where any user can run it. Throws when no such place exists. */
export function reachableCli(): ReachableCli {
  const base = tmpdir();
  const blocked = othersCanReach(base);
  if (blocked) throw new Error(`the temporary folder ${base} is not reachable by other users (${blocked} lacks o+x); set TMPDIR`);
  const dir = mkdtempSync(join(base, 'btrfs-ts-cli-'));
  chmodSync(dir, 0o755);
  for (const part of ['bin', 'dist', 'package.json']) cpSync(join(ROOT, part), join(dir, part), { recursive: true });
  const deps = new Set<string>();
  runtimeDeps(ROOT, deps);
  for (const name of deps) {
    const from = join(ROOT, 'node_modules', name);
    if (!existsSync(from)) throw new Error(`runtime dependency ${name} is not installed in ${ROOT}/node_modules`);
    cpSync(from, join(dir, 'node_modules', name), { recursive: true, dereference: true });
  }
  // mkdtemp and cpSync keep the checkout's modes; what the owner may read, everyone may read here
  chmodTree(dir);
  return { bin: join(dir, 'bin', 'btrfs-ts.js'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function chmodTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      chmodSync(p, 0o755);
      chmodTree(p);
    } else if (e.isFile()) {
      chmodSync(p, (statSync(p).mode & 0o100) ? 0o755 : 0o644);
    }
  }
}
