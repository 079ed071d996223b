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
const main = dir === '-' ? (await import(${JSON.stringify(join(DIST, 'cli', 'main.js'))})).main : mainFromBundle(${JSON.stringify(DIST)}, dir, [], args[0]);
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
    for (const f of ['cli.bundle.cjs', 'cli.cache', 'cli-receive.cache', 'cli-send.cache']) expect(statSync(join(out, f)).size).toBeGreaterThan(100_000);
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
    const { cacheNames, mainFromBundle, RECEIVE_FLAGS } = await import('../src/cli/launch.js');
    expect(cacheNames([])).toEqual(['cli.cache']);
    expect(cacheNames([], 'dump')).toEqual(['cli.cache']);
    expect(cacheNames([], 'constructor')).toEqual(['cli.cache']);
    expect(cacheNames([], 'send')).toEqual(['cli-send.cache', 'cli.cache']);
    expect(cacheNames(RECEIVE_FLAGS, 'receive')).toEqual(['cli-receive.cache']);
    expect(cacheNames(['--max-semi-space-size=8'])).toEqual([]);
    expect(cacheNames([...RECEIVE_FLAGS, '--inspect'])).toEqual([]);
    expect(mainFromBundle(DIST, out, ['--inspect'])).toBeUndefined();
  });

  it('send runs from the bundle with a cache of its own (made with the flag the send changes put back), else with the general one', { timeout: 60_000 }, () => {
    const img = join(work, 'send.img');
    expect(run('-', 'receive', '-q', '-f', sample, img).status).toBe(0);
    const send = (dir: string, name: string) => {
      const r = run(dir, 'send', '-q', '-f', join(work, name), img, 'sample');
      return { ...r, stream: r.status === 0 ? readFileSync(join(work, name)) : undefined };
    };
    const fromDist = send('-', 'dist.stream');
    expect(fromDist.status).toBe(0);
    const check = (dir: string, name: string) => {
      const r = send(dir, name);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stream!.equals(fromDist.stream!)).toBe(true);
    };
    // the general cache refused: send still starts from the bundle (its own cache), dump does not
    const noGeneral = spoiled('send-own', (d) => writeFileSync(join(d, 'cli.cache'), Buffer.alloc(4096, 7)));
    check(noGeneral, 'own.stream');
    expectFallback(noGeneral);
    // send's own cache missing or older than the bundle: the general one
    check(spoiled('send-none', (d) => rmSync(join(d, 'cli-send.cache'))), 'general.stream');
    const old = new Date(statSync(join(out, 'cli.bundle.cjs')).mtimeMs - 60_000);
    check(spoiled('send-stale', (d) => utimesSync(join(d, 'cli-send.cache'), old, old)), 'stale.stream');
    // both refused: dist/
    expect(send(spoiled('send-neither', (d) => {
      writeFileSync(join(d, 'cli.cache'), Buffer.alloc(4096, 7));
      rmSync(join(d, 'cli-send.cache'));
    }), 'x.stream').status).toBe(3);
  });
});

describe.skipIf(built)('the CLI bundle', () => {
  it('needs a build', () => skipReason('cli-bundle', 'run `npm run build` first (dist/cli/launch.js)'));
});
