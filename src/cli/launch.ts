import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

/**
 * How bin/btrfs-ts.js gets `main`. The build (scripts/bundle-cli.mjs, run by `npm run build`) writes the
 * whole CLI as one CommonJS file and a V8 code cache of it, made by running a few commands: compiled that
 * way, the functions every command needs at start (commander, argument parsing, stream parsing, CRCs) come
 * as bytecode instead of being parsed and compiled from source, lazily, one by one (a tiny dump 314 → 229 M
 * instructions; docs/performance.md, eighth session, start13). Any doubt — no bundle, a bundle older than
 * dist/ (rebuilt by `tsc` alone), no cache, a cache V8 rejects (another node, CPU or V8 flags), a read or
 * compile error — and the CLI is imported from dist/ as before: same code, same behaviour, slower start.
 */

export type Main = (argv: string[]) => Promise<number>;

export const BUNDLE = 'cli.bundle.cjs';

/**
 * Receive and replay run with these flags (bin/btrfs-ts.js, which says why); the other commands with none.
 * Their own code cache (cli-receive.cache) is made under them.
 */
export const RECEIVE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--max-inlined-bytecode-size-cumulative=300'];

/**
 * Commands with a code cache of their own, made by running them: the general cache holds what `--version`,
 * `--help` and a dump compiled, and a send compiled ~46 M instructions' worth of its own functions lazily at
 * every start (an incremental send 625 → 590 M with its own cache; docs/performance.md, thirteenth session).
 */
const OWN_CACHES: ReadonlyMap<string, string> = new Map([['send', 'cli-send.cache']]);

/**
 * The code caches for node started with `execArgv` to run `command`, best first: V8 accepts a cache only
 * under the flags it was made with, so there is one per flag set the launcher uses, and none for any other.
 */
export function cacheNames(execArgv: readonly string[], command?: string): string[] {
  if (execArgv.length === 0) {
    const own = command === undefined ? undefined : OWN_CACHES.get(command);
    return own ? [own, 'cli.cache'] : ['cli.cache'];
  }
  if (execArgv.length === RECEIVE_FLAGS.length && execArgv.every((a, i) => a === RECEIVE_FLAGS[i])) return ['cli-receive.cache'];
  return [];
}

/** The bundle compiled (with `cachedData` if given) and a way to run it: its `main`. */
export function compileBundle(distDir: string, bundleDir: string, cachedData?: Buffer): { script: Script; evaluate(): Main } {
  const file = join(bundleDir, BUNDLE);
  // a CommonJS module wrapper; __btrfsDist is where dist/ is, for the modules' import.meta.url
  // read as latin1, a byte a character: the bundle is ASCII in its code (esbuild's charset 'ascii' escapes
  // every other character in strings and regular expressions), and a one-byte read skips UTF-8 decoding
  // (~1 ms against ~4 for its 1 MB); a character past ASCII left in a comment only reads differently there
  const source = `(function (exports, require, module, __filename, __dirname, __btrfsDist) {${readFileSync(file, 'latin1')}\n})`;
  const script = new Script(source, cachedData ? { filename: file, cachedData } : { filename: file });
  return {
    script,
    evaluate(): Main {
      const module = { exports: {} as { main?: unknown } };
      // packages left out of the bundle (native addon, WebAssembly) are found from dist/, wherever the bundle is
      const req = createRequire(join(distDir, BUNDLE));
      (script.runInThisContext() as (...a: unknown[]) => void)(module.exports, req, module, file, bundleDir, distDir);
      if (typeof module.exports.main !== 'function') throw new Error(`${file} exports no main`);
      return module.exports.main as Main;
    },
  };
}

/**
 * `main` from the bundle and its code cache in `bundleDir` (the command's own where there is one and it is
 * current, else the general one), or undefined where that is not certain to be right and fast.
 */
export function mainFromBundle(distDir: string, bundleDir = distDir, execArgv: readonly string[] = process.execArgv, command: string | undefined = process.argv[2]): Main | undefined {
  try {
    const mtime = (f: string): number => statSync(f).mtimeMs;
    const bundleTime = mtime(join(bundleDir, BUNDLE));
    // `tsc` alone rewrites every file of dist/ and leaves the bundle as it was: stale
    if (bundleTime < mtime(join(distDir, 'cli', 'main.js'))) return undefined;
    const cache = cacheNames(execArgv, command).find((c) => {
      try {
        return mtime(join(bundleDir, c)) >= bundleTime;
      } catch {
        return false; // not made (a build that could not make it): the next one
      }
    });
    if (cache === undefined) return undefined;
    const compiled = compileBundle(distDir, bundleDir, readFileSync(join(bundleDir, cache)));
    if (compiled.script.cachedDataRejected !== false) return undefined;
    return compiled.evaluate();
  } catch {
    return undefined;
  }
}

/** The CLI's `main`: from the bundle where it can be, else from dist/ (this file's directory's parent). */
export async function loadMain(): Promise<Main> {
  const distDir = fileURLToPath(new URL('../', import.meta.url));
  return mainFromBundle(distDir) ?? (await import('./main.js')).main;
}
