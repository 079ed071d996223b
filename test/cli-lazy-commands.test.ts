import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { commandsFor, registerCommands } from '../src/cli/commands/index.js';
import { checkAddonZstd } from '../src/compress/zstd.js';
import { nativeAddon } from '../src/util/native-addon.js';
import { skipReason } from './helpers/oracle.js';

// Start-up loads only the command being run; help and unknown commands still see every command.
describe('commands imported on demand', () => {
  const argv = (...args: string[]) => ['node', 'btrfs-ts', ...args];

  it('a known command loads itself only, --version none, anything else all', () => {
    expect(commandsFor(argv('dump', '-f', 'x'))).toEqual(['dump']);
    expect(commandsFor(argv('extract-stream', 'd'))).toEqual(['extract-stream']);
    expect(commandsFor(argv('--version'))).toEqual([]);
    expect(commandsFor(argv('-V'))).toEqual([]);
    const all = commandsFor(argv('--help'));
    expect(all).toContain('receive');
    expect(all.length).toBeGreaterThan(10);
    expect(commandsFor(argv())).toEqual(all);
    expect(commandsFor(argv('help', 'dump'))).toEqual(all);
    expect(commandsFor(argv('nosuch'))).toEqual(all);
    expect(commandsFor(argv('toString'))).toEqual(all); // not an inherited property taken for a command
  });

  it('registers exactly the selected commands, under the names they are selected by', async () => {
    const one = new Command();
    await registerCommands(one, argv('subvolume', 'list', 'img'));
    expect(one.commands.map((c) => c.name())).toEqual(['subvolume']);
    const every = new Command();
    await registerCommands(every, argv('--help'));
    expect(every.commands.map((c) => c.name())).toEqual(commandsFor(argv('--help')));
  });
});

// What a dump of a plain stream file loads: no codec, no decompressor (node:zlib, child_process), and not
// the planner — measured by a module loader hook on the built CLI.
const BIN = join(__dirname, '..', 'bin', 'btrfs-ts.js');
const built = existsSync(join(__dirname, '..', 'dist', 'cli', 'main.js'));
if (!built) skipReason('modules loaded by dump', 'run `npx tsc -p .` first (bin/btrfs-ts.js needs dist/)');

describe.skipIf(!built)('modules a plain dump loads', () => {
  it('dump -f sample.stream: the stream and dump modules, no codec, decompressor or planner', () => {
    const hook = join(mkdtempSync(join(tmpdir(), 'btrfs-ts-loader-')), 'hook.mjs');
    writeFileSync(hook, "export async function load(u, c, n) { process.stderr.write('LOAD ' + u + '\\n'); return n(u, c); }\n");
    const r = spawnSync('node', ['--no-warnings', '--experimental-loader', hook, BIN, 'dump', '-f', join(__dirname, '..', 'streams', 'sample.stream')]);
    rmSync(dirname(hook), { recursive: true, force: true });
    expect(r.status).toBe(0);
    const loaded = r.stderr.toString().split('\n').filter((l) => l.startsWith('LOAD ')).map((l) => l.slice(5));
    expect(loaded.some((u) => u.endsWith('/dist/dump/dump-receiver.js'))).toBe(true);
    expect(loaded.some((u) => u.endsWith('/dist/stream/parser.js'))).toBe(true);
    expect(loaded.filter((u) => /\/dist\/(compress|plan)\/|\/dist\/io\/decompress\.js$|^node:(zlib|child_process)$|zstd-wasm/.test(u))).toEqual([]);
  });
});

// What an incremental send loads of node's own modules: not node:fs's promises API (the image and the
// output are opened on the send's thread), not node:zlib, node:worker_threads or node:os (compressed
// extents, a full send's threads) — 1.2-1.8 ms and ~11 M instructions of every incremental send's start
// (docs/performance.md, fourteenth session, incr18). Read from process.moduleLoadList as the process ends.
describe.skipIf(!built || !existsSync(join(__dirname, '..', 'streams', 'incr-v1.stream')))('node modules an incremental send loads', () => {
  it('send -p full IMG incr: its stream, without fs/promises, zlib, worker_threads or os', () => {
    const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-send-modules-'));
    try {
      const img = join(dir, 'img');
      for (const s of ['full-v1', 'incr-v1']) {
        expect(spawnSync('node', [BIN, 'receive', '-q', '-f', join(__dirname, '..', 'streams', `${s}.stream`), img]).status).toBe(0);
      }
      const hook = join(dir, 'hook.cjs');
      writeFileSync(hook, "process.on('exit', () => require('node:fs').writeFileSync(process.env.MODULES_OUT, process.moduleLoadList.join('\\n')));\n");
      const out = join(dir, 'out.stream');
      const modules = join(dir, 'modules');
      // in NODE_OPTIONS, not in node's arguments: the launcher takes the bundle only for a node started without any
      const env = { ...process.env, MODULES_OUT: modules, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${hook}` };
      const r = spawnSync(BIN, ['send', '-q', '-p', 'full', '-f', out, img, 'incr'], { env });
      expect(r.stderr.toString()).toBe('');
      expect(r.status).toBe(0);
      // a stream came out: header, SNAPSHOT of incr against full, ..., END
      expect(readFileSync(out).subarray(0, 13).toString()).toBe('btrfs-stream\0');
      const loaded = readFileSync(modules, 'utf8').split('\n');
      expect(loaded).toContain('NativeModule v8'); // the hook saw the send's modules
      expect(loaded.filter((m) => /^NativeModule (zlib|worker_threads|os)$/.test(m))).toEqual([]);
      // dist/ as ES modules (no bundle: a build by tsc alone) loads it anyway: node's facade of node:fs reads every export
      if (!loaded.includes('NativeModule internal/modules/esm/module_job')) expect(loaded).not.toContain('NativeModule internal/fs/promises');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// What a receive loads of the zstd WebAssembly library: nothing where our addon decodes zstd (the encoded
// extents of zstd-v2.stream pass through, and whatever is decoded goes through libzstd); with --compress
// zstd it is needed to compress. Seen by a hook on the CommonJS loader, which the bundle requires it through.
const addonZstd = checkAddonZstd(nativeAddon) !== undefined;
if (!addonZstd) skipReason('the zstd library a receive loads', 'the addon or its libzstd is not there: the WebAssembly decodes');

/**
 * A quiet receive (`args`, then a new image) with `hook` (CommonJS source) preloaded through NODE_OPTIONS:
 * the hook writes what it saw to the file named by HOOK_OUT, which `read` is given once the receive ended
 * with status 0 and nothing on stderr.
 */
function hookedReceive<T>(hook: string, args: string[], read: (out: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-receive-hooked-'));
  try {
    const file = join(dir, 'hook.cjs');
    writeFileSync(file, hook);
    const out = join(dir, 'out');
    const env = { ...process.env, HOOK_OUT: out, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${file}` };
    const r = spawnSync(BIN, ['receive', '-q', ...args, join(dir, 'img')], { env });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
    return read(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(!built || !addonZstd)('the zstd WebAssembly a receive loads', () => {
  const receiveLoads = (...args: string[]): boolean => hookedReceive(
    "const M = require('node:module'); const load = M._load; M._load = function (r, ...a) { if (String(r).includes('zstd-wasm')) require('node:fs').writeFileSync(process.env.HOOK_OUT, 'loaded'); return load.call(this, r, ...a); };\n",
    [...args, '-f', join(__dirname, '..', 'streams', 'zstd-v2.stream')],
    (seen) => existsSync(seen),
  );

  it('receive of a zstd stream: not loaded; with --compress zstd: loaded', () => {
    expect(receiveLoads()).toBe(false);
    expect(receiveLoads('--force-decompress')).toBe(false);
    expect(receiveLoads('--force-decompress', '--compress', 'zstd')).toBe(true);
  });
});

// What a quiet receive loads of node's own modules: under its V8 flags node compiles every one of them from
// source, so a receive that writes nothing to standard output or error must not make process.stdout or
// process.stderr (node's stream modules, ~35 M instructions), nor load fs/promises, rimraf or zlib.
describe.skipIf(!built)('node modules a quiet receive loads', () => {
  it('receive -q -f sample.stream IMG: no stream modules, fs/promises, rimraf or zlib', () => {
    const loaded = hookedReceive(
      "process.on('exit', () => require('node:fs').writeFileSync(process.env.HOOK_OUT, process.moduleLoadList.join('\\n')));\n",
      ['-f', join(__dirname, '..', 'streams', 'sample.stream')],
      (modules) => readFileSync(modules, 'utf8').split('\n'),
    );
    expect(loaded).toContain('Internal Binding signal_wrap'); // the hook saw the command run (its Ctrl-C handlers)
    // dist/ as ES modules (no bundle: a build by tsc alone) loads more through node's ES module loader
    if (!loaded.includes('NativeModule internal/modules/esm/module_job')) {
      expect(loaded.filter((m) => /^NativeModule (stream|net|tty|internal\/fs\/sync_write_stream|internal\/fs\/promises|internal\/fs\/rimraf|zlib)$/.test(m))).toEqual([]);
    }
  });
});
