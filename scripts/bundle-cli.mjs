#!/usr/bin/env node
// The CLI as one CommonJS file plus V8 code caches of it (dist/cli.bundle.cjs, dist/cli.cache,
// dist/cli-receive.cache, dist/cli-send.cache), read by dist/cli/launch.js at start: see there for why and
// for the fallback.
// Run after tsc (`npm run build`); bundles dist/, not src/. Usage: node scripts/bundle-cli.mjs [OUT_DIR]
// (default dist/). `--warm OUT_DIR CACHE` is the internal second step: run a few commands in this process
// from the bundle just written, then save the code V8 compiled for them as CACHE.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const STREAMS = join(ROOT, 'streams');

async function build(out) {
  const { BUNDLE, RECEIVE_FLAGS } = await import(join(DIST, 'cli', 'launch.js'));
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    // a build without devDependencies: the CLI then starts from dist/ (launch.js), correct and slower
    process.stderr.write('bundle-cli: esbuild is not installed; no CLI bundle (the CLI loads dist/ instead)\n');
    return;
  }
  const file = join(out, BUNDLE);
  await esbuild.build({
    entryPoints: [join(DIST, 'cli', 'main.js')],
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // launch.ts reads the bundle as latin1: every character past ASCII in code must be an escape
    charset: 'ascii',
    // import() of a package becomes require(): a vm.Script has no module loader for import()
    supported: { 'dynamic-import': false },
    // loaded at run time from node_modules: a native addon and WebAssembly packages
    external: ['@node-rs/*', '@bokuweb/zstd-wasm', 'hash-wasm'],
    plugins: [importMetaUrl, lazyChildProcess],
    banner: { js: "const __btrfsUrl = (p) => require('node:url').pathToFileURL(require('node:path').join(__btrfsDist, p)).href;" },
    logLevel: 'warning',
  });
  // the launcher's own logic (dist/cli/launch.js) as CommonJS, which bin/btrfs-ts.js (CommonJS: bin/package.json)
  // requires: node then starts without its ES module loader (~5-10 ms of every command); main.js stays an import().
  // Only beside dist/'s own launch.js: a bundle made elsewhere (tests) leaves the one bin/ runs alone
  if (out === DIST) await esbuild.build({
    entryPoints: [join(DIST, 'cli', 'launch.js')],
    outfile: join(DIST, 'cli', 'launch.cjs'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['./main.js'],
    define: { 'import.meta.url': '__launchUrl' },
    banner: { js: "const __launchUrl = require('node:url').pathToFileURL(__filename).href;" },
    logLevel: 'warning',
  });
  // the caches: for node as the launcher starts it, without flags and with receive's; and send's own
  for (const [flags, cache] of [[[], 'cli.cache'], [RECEIVE_FLAGS, 'cli-receive.cache'], [[], 'cli-send.cache']]) {
    rmSync(join(out, cache), { force: true });
    const r = spawnSync(process.execPath, [...flags, fileURLToPath(import.meta.url), '--warm', out, cache], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) {
      rmSync(file, { force: true }); // no bundle: the CLI loads dist/
      throw new Error(`bundle-cli: making ${cache} failed (status ${r.status})`);
    }
    // send's is made only with the repository's streams (launch.js then takes the general one)
    if (cache === 'cli-send.cache' && !existsSync(join(out, cache))) continue;
    // a cache V8 would refuse at start (made under other flags) is worse than none: launch.js would load
    // dist/ instead of taking the general cache
    const check = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', `
      import { compileBundle } from ${JSON.stringify(join(DIST, 'cli', 'launch.js'))};
      import { readFileSync } from 'node:fs';
      process.exitCode = compileBundle(${JSON.stringify(DIST)}, ${JSON.stringify(out)}, readFileSync(${JSON.stringify(join(out, cache))})).script.cachedDataRejected === false ? 0 : 9;`], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (check.status !== 0) {
      rmSync(join(out, cache), { force: true });
      if (cache === 'cli.cache' || cache === 'cli-receive.cache') rmSync(file, { force: true });
      throw new Error(`bundle-cli: V8 refuses ${cache} (status ${check.status})`);
    }
  }
}

/** Each dist/ module's import.meta.url, as the module itself would see it (files and workers are found from it). */
const importMetaUrl = {
  name: 'import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith(DIST + '/')) return undefined;
      const src = readFileSync(args.path, 'utf8');
      return { contents: src.replaceAll('import.meta.url', `__btrfsUrl(${JSON.stringify(relative(DIST, args.path))})`), loader: 'js' };
    });
  },
};

/**
 * commander requires node:child_process when it loads (~11 M instructions), for executable subcommands
 * that btrfs-ts does not have: it gets an object that loads the module if spawn is ever called.
 */
const lazyChildProcess = {
  name: 'lazy-child-process',
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      args.importer.includes(`${'/node_modules/commander/'}`) ? { path: 'lazy-child-process', namespace: 'lazy' } : undefined);
    b.onLoad({ filter: /.*/, namespace: 'lazy' }, () => ({
      contents: "module.exports = { get spawn() { return require('node:child_process').spawn; } };",
      loader: 'js',
    }));
  },
};

/** The commands `cache` is warmed with, in the scratch directory `work` (send's image: sendImage). */
function warmRuns(cache, work) {
  // the streams are the repository's test data: a checkout without them warms less
  const sample = join(STREAMS, 'sample.stream');
  const full = join(STREAMS, 'full-v1.stream');
  const img = join(work, 'warm.img');
  if (cache === 'cli.cache') return [['--version'], ['--help'], ['dump', '-f', full]];
  if (cache === 'cli-receive.cache') return [['receive', '--help'], ['receive', '-q', '-f', sample, img]];
  const out = join(work, 'warm.stream');
  return [['send', '-q', '-f', out, img, 'full'], ['send', '-q', '-p', 'full', '-f', out, img, 'incr'],
    ['send', '-q', '--no-data', '-p', 'full', '-f', out, img, 'incr'], ['send', '-q', '--compressed-data', '-f', out, img, 'zstd']];
}

/**
 * Send's scratch image, received by a CLI of its own (its receive's functions stay out of send's cache);
 * false where the streams are missing.
 */
function sendImage(work) {
  for (const s of ['full-v1', 'incr-v1', 'zstd-v2']) {
    const stream = join(STREAMS, `${s}.stream`);
    if (!existsSync(stream)) return false;
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'btrfs-ts.js'), 'receive', '-q', '-f', stream, join(work, 'warm.img')], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) throw new Error(`bundle-cli: receiving ${s} for the send cache: status ${r.status}`);
  }
  return true;
}

/**
 * V8's defaults of the flags the send command changes as it runs (dist/cli/send-flags.js), as flags: put
 * back before the cache is written, whose flag hash must be that of node as the launcher starts it.
 */
async function defaultSendFlags() {
  const { SEND_RUNTIME_FLAGS } = await import(join(DIST, 'cli', 'send-flags.js'));
  const r = spawnSync(process.execPath, ['--v8-options'], { encoding: 'utf8' });
  return Object.values(SEND_RUNTIME_FLAGS).map((f) => {
    const m = new RegExp(`--${f}=(\\d+)`).exec(r.stdout.slice(r.stdout.indexOf(`  --${f} `)));
    if (!m) throw new Error(`bundle-cli: no default --${f} in node --v8-options`);
    return `--${f}=${m[1]}`;
  });
}

/** Runs commands from the bundle in `out` (compiled without cache), then writes the code cache V8 made. */
async function warm(out, cache) {
  const { compileBundle } = await import(join(DIST, 'cli', 'launch.js'));
  const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-bundle-'));
  let compiled;
  try {
    const send = cache === 'cli-send.cache';
    if (send && !sendImage(work)) return;
    compiled = compileBundle(DIST, out);
    const main = compiled.evaluate();
    for (const args of warmRuns(cache, work)) {
      if (args.includes('-f') && !send && !existsSync(args[args.indexOf('-f') + 1])) continue;
      const status = await main(['node', 'btrfs-ts', ...args]);
      if (status !== 0) throw new Error(`bundle-cli: btrfs-ts ${args.join(' ')} from the bundle: status ${status}`);
    }
    if (send) for (const f of await defaultSendFlags()) setFlagsFromString(f);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const tmp = join(out, `${cache}.tmp`);
  writeFileSync(tmp, compiled.script.createCachedData());
  renameSync(tmp, join(out, cache));
  process.exitCode = 0;
}

if (process.argv[2] === '--warm') {
  await warm(process.argv[3], process.argv[4]);
} else {
  await build(resolve(process.argv[2] ?? DIST));
}
