import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dirDescriptor, reach, SHORT_PATH } from '../src/io/long-paths.js';
import { BIN } from './hostile/harness.js';
import { reachableCli } from './helpers/reachable-cli.js';
import { btrfsCheck, canMount, checkProblems, haveBtrfsProgs, mount, tmpDir } from './image-write-helpers.js';

/**
 * Trees deeper than PATH_MAX (a path of 4,096 bytes or more with its NUL): every path system call refuses
 * them, and btrfs-ts reaches them through descriptors (src/io/long-paths.ts). The fixture is made by
 * python3 through directory descriptors (os.open with dir_fd), not by the code under test.
 */

const havePython = spawnSync('python3', ['-c', '']).status === 0;
const haveAttr = spawnSync('getfattr', ['--version']).status === 0 && spawnSync('setfattr', ['--version']).status === 0;
const why = !havePython ? 'python3 not installed: it makes the deep fixture' : !haveAttr ? 'getfattr/setfattr (attr) not installed' : undefined;
if (why) console.warn(`long-paths tests skipped: ${why}`);

const work = tmpDir('btrfs-ts-long-');
// rm(1): node's own recursive rm stops at the first path past PATH_MAX
afterAll(() => spawnSync('rm', ['-rf', work]));

// deep/: 20 levels of 243-byte names (~4,900 bytes deep); top/: 15 levels of 250 (~3,800, which a send can
// carry). Files with xattrs, hard links, symlinks and fifos at a few levels, one name not UTF-8. Prints the
// inode number of the deepest file, as python's stat through descriptors has it.
const FIXTURE = String.raw`
import os, sys
def tree(top, levels, width, at):
    os.mkdir(top)
    os.setxattr(top, 'user.top', b'T')
    fd = os.open(top, os.O_RDONLY)
    for i in range(levels):
        n = ('%s%02d' % (top[0], i)) + 'x' * (width - 3)
        os.mkdir(n, 0o750 if i % 2 else 0o755, dir_fd=fd)
        nfd = os.open(n, os.O_RDONLY, dir_fd=fd); os.close(fd); fd = nfd
        os.setxattr(fd, 'user.level', b'%d' % i)
        if i in at:
            f = os.open('file%d' % i, os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
            os.write(f, bytes(range(256)) * (40 * (i + 1))); os.setxattr(f, 'user.f', b'F%d' % i); os.close(f)
            os.symlink('../elsewhere', 'link%d' % i, dir_fd=fd)
            os.link('file%d' % i, 'hard%d' % i, src_dir_fd=fd, dst_dir_fd=fd)
            os.mkfifo('fifo%d' % i, dir_fd=fd)
            os.close(os.open(b'raw\xff\xfe%d' % i, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    last = os.stat('file%d' % at[-1], dir_fd=fd).st_ino
    os.close(fd)
    return last
os.chdir(sys.argv[1])
print(tree('deep', 20, 243, [10, 15, 19]))
tree('top', 15, 250, [7, 14])
`;

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('node', [BIN, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function manifestOf(target: string, ...more: string[]): string {
  const r = cli('manifest', target, ...more);
  expect([r.status, r.stderr]).toEqual([0, '']);
  return r.stdout;
}

describe.skipIf(!!why)('trees deeper than PATH_MAX', () => {
  const src = join(work, 'src');
  let deepestIno = 0;
  const image = join(work, 'deep.img');
  const deepFile = (): Buffer => {
    const parts = Array.from({ length: 20 }, (_, i) => `d${String(i).padStart(2, '0')}${'x'.repeat(240)}`);
    return Buffer.from(join(src, 'deep', ...parts, 'file19'));
  };

  it('makes the fixture', () => {
    mkdirSync(src);
    const r = spawnSync('python3', ['-c', FIXTURE, src], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    deepestIno = Number(r.stdout.trim());
    expect(deepestIno).toBeGreaterThan(0);
    expect(deepFile().length).toBeGreaterThan(4096);
  });

  it('reach() names a deep file through a descriptor, and closes it', () => {
    const fds = readdirSync('/proc/self/fd').length;
    const r = reach(deepFile());
    expect(r.path.length).toBeLessThanOrEqual(SHORT_PATH + 32);
    expect(r.path.toString()).toMatch(new RegExp(`^/proc/${process.pid}/fd/\\d+/`));
    expect(lstatSync(r.path).ino).toBe(deepestIno);
    r.close();
    r.close(); // once only
    expect(readdirSync('/proc/self/fd').length).toBe(fds);
    // a short path is its own, with nothing to close; a deep directory gets a descriptor of its own
    expect(reach(Buffer.from(src)).path.toString()).toBe(src);
    const d = dirDescriptor(deepFile().subarray(0, deepFile().lastIndexOf('/')));
    expect(lstatSync(Buffer.concat([d.path, Buffer.from('/file19')])).ino).toBe(deepestIno);
    d.close();
    expect(() => lstatSync(deepFile())).toThrow(/ENAMETOOLONG/);
  });

  it('manifest DIR lists the deep entries with their xattrs', () => {
    const m = manifestOf(src);
    const lines = m.trim().split('\n');
    // ., deep, top and their 35 directories; five names at each of five levels
    expect(lines.filter((l) => / dir /.test(l))).toHaveLength(1 + 2 + 35);
    expect(lines).toHaveLength(1 + 2 + 35 + 5 * 5);
    // file19 and its hard link hard19, with the xattr of their inode
    expect(lines.filter((l) => /\/(file|hard)19 file .* xattr\.user\.f=F19$/.test(l))).toHaveLength(2);
    expect(lines.filter((l) => / xattr\.user\.level=19$/.test(l))).toHaveLength(1);
    expect(lines.filter((l) => /\/raw\\377\\37619 file /.test(l))).toHaveLength(1);
  });

  it('mkfs -r copies it whole, and btrfs check accepts the image', () => {
    const r = cli('mkfs', '-q', '-r', src, '--subvol', 'ro:top', image);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(manifestOf(image)).toBe(manifestOf(src));
    if (haveBtrfsProgs) {
      const c = btrfsCheck(image);
      expect([c.status, checkProblems(c.output)]).toEqual([0, []]);
    } else {
      console.warn('btrfs check skipped: btrfs-progs not installed');
    }
  });

  it('the kernel sees the same tree in the image', () => {
    if (!canMount) {
      console.warn('kernel mount skipped: not root or no loop devices');
      return;
    }
    const m = mount(image, 'ro');
    try {
      expect(manifestOf(m.dir)).toBe(manifestOf(src));
    } finally {
      m.umount();
    }
  });

  it('extract gives the tree back', () => {
    const out = join(work, 'extracted');
    const r = cli('extract', image, out);
    expect([r.status, r.stderr]).toEqual([0, 'extracted 10 files, 37 dirs, 5 symlinks, 5 hard links, 5 special files\n']);
    expect(manifestOf(out)).toBe(manifestOf(src));
  });

  it('a send of the subvolume extracts under a destination that takes its paths past PATH_MAX', () => {
    const stream = join(work, 'top.stream');
    expect(cli('send', '-q', '-f', stream, image, 'top').status).toBe(0);
    const dest = join(work, 'y'.repeat(200), 'z'.repeat(200));
    mkdirSync(dest, { recursive: true });
    const r = cli('extract-stream', '-f', stream, dest);
    expect([r.status, r.stderr]).toEqual([0, expect.stringMatching(/^extracted 1 subvolume\(s\) \(top\), \d+ commands, \d+ data bytes\n$/)]);
    expect(manifestOf(join(dest, 'top'))).toBe(manifestOf(join(src, 'top')));
    // the deepest file of top/ does lie past PATH_MAX from there
    expect(dest.length + manifestOf(join(src, 'top')).split('\n').reduce((n, l) => Math.max(n, l.indexOf(' ')), 0)).toBeGreaterThan(4096);
  });
  it('an error deep in the tree names the whole path, not the descriptor it was reached through', () => {
    if (process.getuid?.() !== 0 || !existsSync('/usr/bin/setpriv')) {
      console.warn('long-paths unreadable-file case skipped: needs root and setpriv to run as uid 65534');
      return;
    }
    // (the fixture's odd levels are 0750: let the other user walk deep/; top/ is not looked at again)
    expect(spawnSync('chmod', ['-R', 'o+rX', join(src, 'deep')]).status).toBe(0);
    // a file its owner made unreadable, deep down; a user who is not root meets EACCES there
    const secret = Buffer.concat([deepFile().subarray(0, deepFile().lastIndexOf('/')), Buffer.from('/secret')]);
    const d = dirDescriptor(secret.subarray(0, secret.lastIndexOf('/')));
    writeFileSync(Buffer.concat([d.path, Buffer.from('/secret')]), 'x', { mode: 0o000 });
    d.close();
    chmodSync(work, 0o755);
    chmodSync(src, 0o755);
    mkdirSync(join(work, 'out'));
    chmodSync(join(work, 'out'), 0o777);
    const cli = reachableCli();
    try {
      for (const args of [['manifest', join(src, 'deep')], ['mkfs', '-q', '-r', join(src, 'deep'), join(work, 'out', 'nobody.img')]]) {
        const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', cli.bin, ...args], { encoding: 'utf8' });
        expect(r.status, args[0]).toBe(1);
        expect(r.stderr, args[0]).toBe(`btrfs-ts: ERROR: ${secret.toString()}: permission denied (open) [EACCES]\n`);
      }
      expect(readdirSync(join(work, 'out'))).toEqual([]); // the half-made image removed
    } finally {
      cli.remove();
      spawnSync('rm', ['-f', secret.toString()]);
    }
  });
});
