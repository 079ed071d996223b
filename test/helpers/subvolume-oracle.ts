import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { btrfsCheck, checkProblems } from '../image-write-helpers.js';
import { CLI } from './image-harness.js';

/**
 * What the tests of the subvolume commands (delete, snapshot, create, property) share: the CLI run, a
 * file's hash for "unchanged byte for byte", sh with a time limit, and btrfs check finding nothing.
 */

export const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
export const sha = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');
/** `script` by sh in `cwd`, its output. A time limit: on an image it finds damaged the kernel can loop in balance or wait forever in subvolume sync. */
export const sh = (cwd: string, script: string): string => execFileSync('sh', ['-e', '-c', script], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 120_000 });

/** btrfs check finds nothing. */
export function checkClean(image: string): void {
  const c = btrfsCheck(image);
  expect(c.status, c.output).toBe(0);
  expect(checkProblems(c.output)).toEqual([]);
}
