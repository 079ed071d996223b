import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BtrfsTsError } from '../errors.js';

/**
 * node:crypto and node:child_process, loaded on first use. Neither is in node's start-up snapshot: loading
 * node:crypto compiles its JavaScript (~25 ms idle, 80 ms on a loaded machine: a quarter of a small
 * incremental receive), yet a receive needs it only for SHA-256 images, and child_process only for a
 * rollback's hole punching or a compressed input file.
 * node:zlib, node:worker_threads and node:os too: an incremental send needs none of them (zlib-compressed
 * extents, a full send's reading threads, the CPU count for those), and loading them at its start took
 * 1.2-1.8 ms (docs/performance.md, fourteenth session, incr18). A module loaded after the send changed a
 * V8 flag is compiled without node's code cache (~2-3x as long): a full send loads them before
 * (cli/commands/send.ts).
 */
const require = createRequire(import.meta.url);
let crypto: typeof import('node:crypto') | undefined;
let childProcess: typeof import('node:child_process') | undefined;
let zlib: typeof import('node:zlib') | undefined;
let workerThreads: typeof import('node:worker_threads') | undefined;
let os: typeof import('node:os') | undefined;

export const nodeCrypto = (): typeof import('node:crypto') => (crypto ??= require('node:crypto') as typeof import('node:crypto'));
export const nodeChildProcess = (): typeof import('node:child_process') =>
  (childProcess ??= require('node:child_process') as typeof import('node:child_process'));
export const nodeZlib = (): typeof import('node:zlib') => (zlib ??= require('node:zlib') as typeof import('node:zlib'));
export const nodeWorkerThreads = (): typeof import('node:worker_threads') =>
  (workerThreads ??= require('node:worker_threads') as typeof import('node:worker_threads'));
export const nodeOs = (): typeof import('node:os') => (os ??= require('node:os') as typeof import('node:os'));

/**
 * `n` random bytes from the kernel (/dev/urandom, as libuuid reads them), without loading node:crypto for
 * WebCrypto's getRandomValues; that is the fallback where there is no /dev/urandom.
 */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  let fd: number;
  try {
    fd = openSync('/dev/urandom', 'r');
  } catch {
    return globalThis.crypto.getRandomValues(out);
  }
  try {
    for (let done = 0; done < n;) {
      const got = readSync(fd, out, done, n - done, null);
      if (got <= 0) throw new BtrfsTsError('RANDOM', `/dev/urandom gave ${done} of ${n} random bytes`);
      done += got;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}
