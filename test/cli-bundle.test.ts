import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { skipReason } from './helpers/oracle.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * The CLI's bundle and code caches (scripts/bundle-cli.mjs, dist/cli/launch.js): the build makes them, the
 * bundle behaves as dist/ does, and whatever is missing, stale or rejected, the CLI loads dist/ instead.
 * Each case runs in a child node started without flags, as bin/btrfs-ts.js starts it for most commands.
 */
const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'dist');
const built = existsSync(join(DIST, 'cli', 'launch.js'));
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-bundle-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// runs `btrfs-ts ARGS` from the bundle in DIR (status 3 and "fallback" when launch.js declines it), or
// from dist/ when DIR is '-'
const runner = join(work, 'run.mjs');
writeFileSync(runner, `
import { mainFromBundle, compileBundle } from ${JSON.stringify(join(DIST, 'cli', 'launch.js'))};
const [dir, ...args] = process.argv.slice(2);
const main = dir === '-' ? (await import(${JSON.stringify(join(DIST, 'cli', 'main.js'))})).main : mainFromBundle(${JSON.stringify(DIST)}, dir);
if (!main) { process.stderr.write('fallback\\n'); process.exit(3); }
process.exitCode = await main(['node', 'btrfs-ts', ...args]);
if (args[0] === '--version') process.stderr.write(process.moduleLoadList.filter((m) => m.includes('child_process')).join(',') + '\\n');
`);
const run = (dir: string, ...args: string[]) => spawnSync(process.execPath, [runner, dir, ...args], { encoding: 'utf8' });

describe.skipIf(!built)('the CLI bundle', () => {
  const out = join(work, 'out');
  const sample = join(STREAMS_DIR, 'sample.stream');

  it('the build writes the bundle and a cache per flag set; it runs as dist/ does', { timeout: 120_000 }, () => {
    const b = spawnSync(process.execPath, [join(ROOT, 'scripts', 'bundle-cli.mjs'), out], { encoding: 'utf8' });
    expect(b.stderr).toBe('');
    expect(b.status).toBe(0);
    for (const f of ['cli.bundle.cjs', 'cli.cache', 'cli-receive.cache']) expect(statSync(join(out, f)).size).toBeGreaterThan(100_000);
    const cases = [['dump', '-f', sample], ['nosuch'], ['dump', '-f', join(work, 'missing.stream')], ['--version']];
    for (const args of cases) {
      const fromBundle = run(out, ...args);
      const fromDist = run('-', ...args);
      expect(fromBundle.stdout).toBe(fromDist.stdout);
      expect(fromBundle.status).toBe(fromDist.status);
      if (args[0] !== '--version') expect(fromBundle.stderr).toBe(fromDist.stderr);
    }
    expect(run(out, 'dump', '-f', sample).stdout).toBe(readFileSync(join(STREAMS_DIR, 'sample.dump'), 'utf8'));
    // commander's node:child_process is loaded on first use only (executable subcommands, never used)
    expect(run(out, '--version').stderr).toBe('\n');
    expect(run('-', '--version').stderr).toContain('child_process');
  });

  // a copy of the bundle directory, then `spoil` applied to it
  const spoiled = (name: string, spoil: (dir: string) => void): string => {
    const dir = join(work, name);
    rmSync(dir, { recursive: true, force: true });
    spawnSync('cp', ['-a', out, dir]);
    spoil(dir);
    return dir;
  };
  const expectFallback = (dir: string): void => {
    const r = run(dir, 'dump', '-f', sample);
    expect(r.stderr).toBe('fallback\n');
    expect(r.status).toBe(3);
  };

  it('declines a bundle older than dist/ (rebuilt by tsc alone) or a cache older than its bundle', () => {
    const old = new Date(statSync(join(DIST, 'cli', 'main.js')).mtimeMs - 60_000);
    expectFallback(spoiled('stale-bundle', (d) => utimesSync(join(d, 'cli.bundle.cjs'), old, old)));
    expectFallback(spoiled('stale-cache', (d) => {
      utimesSync(join(d, 'cli.cache'), old, old);
    }));
  });

  it('declines a missing bundle or cache, and a cache V8 rejects (garbage, or made under other flags)', () => {
    expectFallback(spoiled('no-bundle', (d) => rmSync(join(d, 'cli.bundle.cjs'))));
    expectFallback(spoiled('no-cache', (d) => rmSync(join(d, 'cli.cache'))));
    expectFallback(spoiled('garbage-cache', (d) => writeFileSync(join(d, 'cli.cache'), Buffer.alloc(4096, 7))));
    expectFallback(spoiled('other-flags', (d) => copyFileSync(join(d, 'cli-receive.cache'), join(d, 'cli.cache'))));
    expectFallback(spoiled('dir-cache', (d) => {
      rmSync(join(d, 'cli.cache'));
      spawnSync('mkdir', [join(d, 'cli.cache')]);
    }));
  });

  it('declines a bundle that throws while it loads, or exports no main', () => {
    for (const [name, body] of [['throws', "throw new Error('boom');"], ['no-main', 'module.exports = {};']] as const) {
      const dir = spoiled(name, (d) => {
        writeFileSync(join(d, 'cli.bundle.cjs'), body);
        // a cache V8 accepts for this bundle, so launch.js gets as far as running it
        const mk = spawnSync(process.execPath, ['--input-type=module', '-e', `
          import { compileBundle } from ${JSON.stringify(join(DIST, 'cli', 'launch.js'))};
          import { writeFileSync } from 'node:fs';
          const c = compileBundle(${JSON.stringify(DIST)}, ${JSON.stringify(d)});
          try { c.evaluate(); } catch {}
          writeFileSync(${JSON.stringify(join(d, 'cli.cache'))}, c.script.createCachedData());`], { encoding: 'utf8' });
        expect(mk.stderr).toBe('');
      });
      expectFallback(dir);
    }
  });

  it('has no cache for flags the launcher does not use', async () => {
    const { cacheName, mainFromBundle, RECEIVE_FLAGS } = await import('../src/cli/launch.js');
    expect(cacheName([])).toBe('cli.cache');
    expect(cacheName(RECEIVE_FLAGS)).toBe('cli-receive.cache');
    expect(cacheName(['--max-semi-space-size=8'])).toBeUndefined();
    expect(cacheName([...RECEIVE_FLAGS, '--inspect'])).toBeUndefined();
    expect(mainFromBundle(DIST, out, ['--inspect'])).toBeUndefined();
  });
});

describe.skipIf(built)('the CLI bundle', () => {
  it('needs a build', () => skipReason('cli-bundle', 'run `npm run build` first (dist/cli/launch.js)'));
});
