import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lockImage } from '../src/io/image-lock.js';
import { tmpDir } from './image-write-helpers.js';

/**
 * The image lock's takeover of a stale lock, in-process: the moments other processes can be caught in are
 * set up by hand (a marker still empty, a taker that died). The end-to-end races (several receives over a
 * stale lock) are in faults.test.ts.
 */
const work = tmpDir('btrfs-ts-lock-');
afterAll(() => rmSync(work, { recursive: true, force: true }));
const startOf = (pid: number) => { const t = readFileSync(`/proc/${pid}/stat`, 'utf8'); return t.slice(t.lastIndexOf(')') + 2).split(' ')[19]; };
const lockFiles = (image: string) => readdirSync(work).filter((n) => n.startsWith(`${image.split('/').pop()}.`)).sort();
let n = 0;

describe.skipIf(!existsSync('/proc/self/stat'))('image lock takeover', () => {
  it('a takeover marker still empty is another taker at work: refused once its content names a live process', async () => {
    const image = join(work, `a${n++}.img`);
    writeFileSync(`${image}.btrfs-ts.lock`, '999999999 1\n');
    const sleeper = spawn('sleep', ['30']);
    try {
      await new Promise((r) => sleeper.once('spawn', r));
      const live = `${sleeper.pid} ${startOf(sleeper.pid!)}`;
      // the marker exists but its taker has not written itself in yet (the old lock wrote after creating)
      writeFileSync(`${image}.btrfs-ts.lock.takeover`, '');
      const writer = spawn('sh', ['-c', `sleep 0.05; printf '%s\\n' '${live}' > '${image}.btrfs-ts.lock.takeover'`]);
      const wrote = new Promise((r) => writer.once('exit', r));
      expect(() => lockImage(image)).toThrow(/another process is taking over the stale lock .*btrfs-ts\.lock$/);
      await wrote;
      // the stale lock and the live taker's marker are left alone
      expect(readFileSync(`${image}.btrfs-ts.lock`, 'utf8')).toBe('999999999 1\n');
      expect(readFileSync(`${image}.btrfs-ts.lock.takeover`, 'utf8')).toBe(`${live}\n`);
    } finally {
      sleeper.kill();
    }
  });

  it('takers that died leave markers: the next goes one marker deeper, takes the lock and removes them all', () => {
    const image = join(work, `b${n++}.img`);
    writeFileSync(`${image}.btrfs-ts.lock`, '999999999 1\n');
    writeFileSync(`${image}.btrfs-ts.lock.takeover`, '999999998 5\n');
    writeFileSync(`${image}.btrfs-ts.lock.takeover-999999998-5`, '999999997 6\n');
    const release = lockImage(image);
    expect(readFileSync(`${image}.btrfs-ts.lock`, 'utf8')).toBe(`${process.pid} ${startOf(process.pid)}\n`);
    expect(lockFiles(image)).toEqual([`${image.split('/').pop()}.btrfs-ts.lock`]);
    expect(() => lockImage(image)).toThrow(new RegExp(`being written by process ${process.pid} `));
    release();
    expect(lockFiles(image)).toEqual([]);
  });

  it('a lock left empty (a crash between create and write, where there are no hard links) is stale', () => {
    const image = join(work, `c${n++}.img`);
    writeFileSync(`${image}.btrfs-ts.lock`, '');
    const release = lockImage(image);
    expect(readFileSync(`${image}.btrfs-ts.lock`, 'utf8')).toMatch(new RegExp(`^${process.pid} \\d+\\n$`));
    release();
    expect(lockFiles(image)).toEqual([]);
  });
});
