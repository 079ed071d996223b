import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from './helpers/image-harness.js';
import { STREAMS_DIR } from './helpers/streams.js';
import { btrfsCheck, skipReason } from './image-write-helpers.js';

/**
 * mkfs and receive on a block device (a loop device of our own over a scratch file), as mkfs.btrfs and a
 * user writing an unmounted partition expect: fstat gives a block device's size as 0, and both took it
 * for a device of 0 bytes (mkfs: IMAGE_TOO_SMALL; receive went on to make a new image and failed at its
 * ftruncate); a receive into the device while the kernel has it mounted must be refused.
 */

const why = skipReason('mount');
if (why) console.warn(`block-device: skipping: ${why}`);

let dir = '';
const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A loop device of our own over `file`, detached after `fn`. */
async function withLoop<T>(file: string, fn: (dev: string) => Promise<T> | T): Promise<T> {
  const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  try {
    return await fn(dev);
  } finally {
    execFileSync('losetup', ['-d', dev]);
  }
}

function scratch(name: string, size: string): string {
  const f = join(dir, name);
  execFileSync('truncate', ['-s', size, f]);
  return f;
}

beforeAll(() => {
  if (!why) dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-blockdev-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(why !== undefined)('a block device as IMAGE', () => {
  it('mkfs takes the whole device, or its first -b bytes; -b past its end is a usage error', async () => {
    const file = scratch('mkfs.img', '512M');
    await withLoop(file, (dev) => {
      const whole = cli('mkfs', '-q', dev);
      expect(whole.status, whole.stderr).toBe(0);
      const part = cli('mkfs', '-q', '-f', '-b', '300M', dev);
      expect(part.status, part.stderr).toBe(0);
      const big = cli('mkfs', '-q', '-f', '-b', '600M', dev);
      expect(big.status).toBe(2);
      expect(big.stderr).toMatch(/-b 629145600: larger than \/dev\/loop\d+ \(536870912 bytes\).*\[MKFS_USAGE\]/);
    });
    const check = btrfsCheck(file);
    expect(check.status, check.output).toBe(0);
    const sb = execFileSync('btrfs', ['inspect-internal', 'dump-super', file], { encoding: 'utf8' });
    expect(sb).toMatch(/^total_bytes\s+314572800$/m);
  });

  it('receive of a full and an incremental stream into a device holding a btrfs: listed, checked, read by the kernel', async () => {
    const file = scratch('recv.img', '512M');
    await withLoop(file, (dev) => {
      expect(cli('mkfs', '-q', dev).status).toBe(0);
      for (const s of ['full-v1', 'incr-v1']) {
        const r = cli('receive', '-q', '-f', join(STREAMS_DIR, `${s}.stream`), dev);
        expect(r.status, r.stderr).toBe(0);
      }
      expect(cli('subvolume', 'list', dev).stdout).toMatch(/ path full\n.* path incr\n$/);
      const manifest = cli('manifest', dev, '--path', 'incr', '--expect', join(STREAMS_DIR, 'incr-v1.manifest'));
      expect(manifest.status, manifest.stdout + manifest.stderr).toBe(0);
    });
    const check = btrfsCheck(file);
    expect(check.status, check.output).toBe(0);
    expect(statSync(file).size).toBe(512 << 20); // nothing grew
    const mnt = mkdtempSync(join(dir, 'mnt-'));
    execFileSync('mount', ['-o', 'loop,ro', file, mnt]);
    try {
      expect(execFileSync('btrfs', ['property', 'get', join(mnt, 'incr'), 'ro'], { encoding: 'utf8' })).toBe('ro=true\n');
      expect(execFileSync('ls', [mnt], { encoding: 'utf8' })).toBe('full\nincr\n');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('mkfs -f refuses what the kernel has mounted, the image file and its device alike, as mkfs.btrfs does', async () => {
    // it overwrote the mounted filesystem under the kernel
    const file = scratch('mounted-mkfs.img', '300M');
    expect(cli('mkfs', '-q', file).status).toBe(0);
    const mnt = mkdtempSync(join(dir, 'mnt-'));
    execFileSync('mount', ['-o', 'loop,ro', file, mnt]); // read-only: the kernel writes nothing meanwhile
    try {
      const dev = execFileSync('findmnt', ['-n', '-o', 'SOURCE', mnt], { encoding: 'utf8' }).trim();
      const before = sha(file);
      for (const target of [file, dev]) {
        const r = cli('mkfs', '-q', '-f', target);
        expect(r.status, target).toBe(1);
        expect(r.stderr, target).toMatch(/is mounted .*: unmount it first \[IMAGE_MOUNTED\]\n$/);
      }
      expect(sha(file)).toBe(before);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('refused while the kernel has the device mounted and where it holds no btrfs; a stream cut short: the device as it was', async () => {
    const file = scratch('mounted.img', '512M');
    expect(cli('mkfs', '-q', file).status).toBe(0);
    await withLoop(file, (dev) => {
      const mnt = mkdtempSync(join(dir, 'mnt-'));
      execFileSync('mount', [dev, mnt]);
      try {
        const r = cli('receive', '-q', '-f', join(STREAMS_DIR, 'full-v1.stream'), dev);
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/is mounted \(as \/dev\/loop\d+\): unmount it first \[IMAGE_MOUNTED\]/);
      } finally {
        execFileSync('umount', [mnt]);
      }
    });
    // a stream that breaks off after the first commands: the device is put back as it was
    const cut = join(dir, 'cut.stream');
    writeFileSync(cut, readFileSync(join(STREAMS_DIR, 'full-v1.stream')).subarray(0, 200_000));
    const held = sha(file);
    await withLoop(file, (dev) => {
      const r = cli('receive', '-q', '-f', cut, dev);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^btrfs-ts: ERROR: .*\n$/);
    });
    expect(sha(file)).toBe(held);
    const blank = scratch('blank.img', '300M');
    const before = sha(blank);
    await withLoop(blank, (dev) => {
      const r = cli('receive', '-q', '-f', join(STREAMS_DIR, 'full-v1.stream'), dev);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/no valid superblock.*\[IMAGE_NO_SUPERBLOCK\]/);
    });
    expect(sha(blank)).toBe(before);
  });
});
