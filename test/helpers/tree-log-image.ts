import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * An image holding a tree log, made by the kernel: mount, commit a base tree, then change files and
 * fsync each change (the fsync writes the log and a superblock pointing at it), and copy the image file
 * right after the last fsync, while it is still mounted — the copy is what a crash at that moment leaves
 * (commit=300 keeps the transaction from committing first). Besides plain changes: an xattr removed and
 * the directory holding a subvolume logged. (Unlinking or renaming names held in INODE_EXTREF items makes
 * the kernel's next fsync commit the transaction instead, so no log carries that here.) Needs root and
 * loop devices.
 */

const SCRIPT = String.raw`
import os, sys
m = sys.argv[1]
def put(p, data, mode='wb'):
    with open(p, mode) as f:
        f.write(data); f.flush(); os.fsync(f.fileno())
def fsync_path(p):
    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.close(fd)
rnd = bytes((i * 7919 + 13) % 251 for i in range(300000))
put(m + '/new', b'new file\n' * 1000)                       # new file
put(m + '/app', rnd[:50000], 'ab')                           # appended data
os.rename(m + '/old', m + '/renamed'); fsync_path(m + '/renamed')        # rename in one directory
os.mkdir(m + '/d/sub'); put(m + '/d/sub/inner', b'inner\n')              # new directory and file
with open(m + '/big', 'r+b') as f:                           # overwrite inside a file
    f.seek(8192); f.write(b'X' * 4096); f.flush(); os.fsync(f.fileno())
with open(m + '/trunc', 'r+b') as f:                         # truncate
    f.truncate(1000); os.fsync(f.fileno())
os.unlink(m + '/gone'); fsync_path(m)                        # unlink, directory fsynced
os.rename(m + '/d/keep', m + '/moved'); fsync_path(m + '/moved')         # rename across directories
os.link(m + '/new', m + '/d/newlink'); fsync_path(m + '/new')            # hard link
os.setxattr(m + '/app', 'user.note', b'logged'); fsync_path(m + '/app')  # xattr
os.removexattr(m + '/xa', 'user.drop'); fsync_path(m + '/xa')             # xattr removed
put(m + '/next-to-subvol', b'x')                             # the directory holding subvolume sv logged
fsync_path(m)
`;

/** Builds `dir/log.img` (with a log) and returns its path, or why it cannot. */
export function makeTreeLogImage(dir: string): string | { skipped: string } {
  const img = join(dir, 'live.img');
  const out = join(dir, 'log.img');
  const mnt = join(dir, 'live-mnt');
  mkdirSync(mnt, { recursive: true });
  writeFileSync(img, '');
  execFileSync('truncate', ['-s', '160M', img]);
  execFileSync('mkfs.btrfs', ['-q', '-f', img], { stdio: 'ignore' });
  const r = spawnSync('mount', ['-o', 'loop,commit=300', img, mnt], { encoding: 'utf8' });
  if (r.status !== 0) return { skipped: `mount failed: ${r.stderr.trim()}` };
  try {
    mkdirSync(join(mnt, 'd'));
    writeFileSync(join(mnt, 'old'), 'hello\n');
    writeFileSync(join(mnt, 'app'), Buffer.alloc(100_000, 0x61));
    writeFileSync(join(mnt, 'big'), Buffer.alloc(65536, 0x62));
    writeFileSync(join(mnt, 'trunc'), Buffer.alloc(20000, 0x63));
    writeFileSync(join(mnt, 'd', 'keep'), 'keep\n');
    writeFileSync(join(mnt, 'gone'), 'gone\n');
    writeFileSync(join(mnt, 'xa'), 'xattrs\n');
    execFileSync('setfattr', ['-n', 'user.keep', '-v', 'k', join(mnt, 'xa')]);
    execFileSync('setfattr', ['-n', 'user.drop', '-v', 'd', join(mnt, 'xa')]);
    execFileSync('btrfs', ['subvolume', 'create', join(mnt, 'sv')], { stdio: 'ignore' });
    execFileSync('sync', ['-f', mnt]);
    const py = join(dir, 'fsyncs.py');
    writeFileSync(py, SCRIPT);
    execFileSync('python3', [py, mnt]);
    copyFileSync(img, out);
  } finally {
    execFileSync('umount', [mnt]);
    rmSync(img, { force: true });
  }
  return out;
}
