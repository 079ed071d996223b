#!/usr/bin/env node
// Builds the optional native addon (native/btrfs-ts-native.c → build/btrfs-ts-native.node) with the system's
// C compiler and Node's own headers: run at install (package.json "install") and by `npm run build` /
// `npm test`. It is optional: without a compiler or headers, or on a platform it does not know, it says so
// in one line and leaves no addon, and btrfs-ts uses its portable engines (src/util/native-addon.ts).
// BTRFS_TS_NATIVE=off skips the build too. Usage: node scripts/build-native.mjs
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCES = ['btrfs-ts-native.c', 'crc-ahead.c', 'data-fill.c', 'extent-head.c', 'leaf-scan.c'].map((f) => join(ROOT, 'native', f));
const HEADER = join(ROOT, 'native', 'btrfs-ts-native.h');
const OUT = join(ROOT, 'build', 'btrfs-ts-native.node');

function skip(why) {
  rmSync(OUT, { force: true }); // an old addon must not outlive a build that could not make a new one
  process.stderr.write(`build-native: no native addon (${why}); btrfs-ts uses its portable CRC32C and zstd engines\n`);
  process.exit(0);
}

if (process.env.BTRFS_TS_NATIVE === 'off') skip('BTRFS_TS_NATIVE=off');
if (process.platform !== 'linux' && process.platform !== 'darwin') skip(`platform ${process.platform}`);
// node_api.h: beside node (…/bin/node → …/include/node), as distributions and the official tarballs put it
const include = [join(dirname(dirname(process.execPath)), 'include', 'node'), process.config?.variables?.node_prefix && join(process.config.variables.node_prefix, 'include', 'node')]
  .find((d) => d && existsSync(join(d, 'node_api.h')));
if (!include) skip(`node_api.h not found beside ${process.execPath}`);
if (existsSync(OUT) && [...SOURCES, HEADER, fileURLToPath(import.meta.url)].every((f) => statSync(OUT).mtimeMs >= statSync(f).mtimeMs)) process.exit(0);

const cc = process.env.CC || 'cc';
const tmp = `${OUT}.${process.pid}.tmp`;
mkdirSync(dirname(OUT), { recursive: true });
const args = ['-shared', '-fPIC', '-O2', '-std=gnu11', '-Wall', '-I', include, '-o', tmp, ...SOURCES, '-ldl', '-lpthread'];
// a macOS addon leaves Node-API's symbols to be found in the node binary when it loads
if (process.platform === 'darwin') args.unshift('-undefined', 'dynamic_lookup');
const r = spawnSync(cc, args, { stdio: ['ignore', 'inherit', 'inherit'] });
if (r.error || r.status !== 0) {
  rmSync(tmp, { force: true });
  skip(r.error ? `${cc}: ${r.error.code ?? r.error.message}` : `${cc} exited with ${r.status}`);
}
renameSync(tmp, OUT);
