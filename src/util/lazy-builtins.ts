import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BtrfsTsError } from '../errors.js';

/**
 * node:crypto and node:child_process, loaded on first use. Neither is in node's start-up snapshot: loading
 * node:crypto compiles its JavaScript (~25 ms idle, 80 ms on a loaded machine: a quarter of a small
 * incremental receive), yet a receive needs it only for SHA-256 images, and child_process only for a
 * rollback's hole punching or a compressed input file.
 */
const require = createRequire(import.meta.url);
let crypto: typeof import('node:crypto') | undefined;
let childProcess: typeof import('node:child_process') | undefined;

export const nodeCrypto = (): typeof import('node:crypto') => (crypto ??= require('node:crypto') as typeof import('node:crypto'));
export const nodeChildProcess = (): typeof import('node:child_process') =>
  (childProcess ??= require('node:child_process') as typeof import('node:child_process'));

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
