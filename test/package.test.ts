import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { skipReason } from './helpers/oracle.js';

/** The package as a user installs it: loadable by require and import, the version from package.json. */
const ROOT = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string; dependencies: Record<string, string>; optionalDependencies?: Record<string, string>; files: string[];
};
const built = existsSync(join(ROOT, 'dist', 'index.js'));

describe('package', () => {
  it('require() and import of the package name give the same API; --version is package.json\'s', () => {
    if (!built) {
      skipReason('package', 'run `npx tsc -p .` first (needs dist/)');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-pkg-'));
    try {
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(ROOT, join(dir, 'node_modules', 'btrfs-ts'));
      const req = spawnSync('node', ['-e', "const m = require('btrfs-ts'); console.log(Object.keys(m).sort().join(','))"], { cwd: dir, encoding: 'utf8' });
      expect(req.status, req.stderr).toBe(0);
      const imp = spawnSync('node', ['--input-type=module', '-e', "import * as m from 'btrfs-ts'; console.log(Object.keys(m).sort().join(','))"], { cwd: dir, encoding: 'utf8' });
      expect(imp.status, imp.stderr).toBe(0);
      expect(req.stdout).toBe(imp.stdout);
      expect(req.stdout).toMatch(/(^|,)receiveStreams(,|$)/);
      const v = spawnSync('node', [join(ROOT, 'bin', 'btrfs-ts.js'), '--version'], { encoding: 'utf8' });
      expect(v.stdout.trim()).toBe(pkg.version);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runtime dependencies are exactly what src/ imports; LICENSE and CHANGELOG ship', () => {
    const imported = new Set<string>();
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts')) {
          // static imports, dynamic import('x') (lazily loaded libraries) and createRequire(...)('x') (the optional native CRC)
          for (const m of readFileSync(p, 'utf8').matchAll(/^(?:import|export)\b[^;]*?from '([^'.][^']*)'|\bimport\('([^'.][^']*)'\)|createRequire\([^)]*\)\('([^'.][^']*)'\)/gm)) {
            const spec = (m[1] ?? m[2] ?? m[3])!;
            if (spec.startsWith('node:')) continue;
            imported.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
          }
        }
      }
    };
    walk(join(ROOT, 'src'));
    expect([...imported].sort()).toEqual([...Object.keys(pkg.dependencies), ...Object.keys(pkg.optionalDependencies ?? {})].sort());
    for (const f of ['LICENSE', 'CHANGELOG.md']) {
      expect(existsSync(join(ROOT, f))).toBe(true);
      expect(pkg.files).toContain(f);
    }
  });
});
