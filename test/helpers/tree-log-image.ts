import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * An image holding a tree log, made by the kernel: mount, commit a base tree, then change files and
 * fsync each change (the fsync writes the log and a superblock pointing at it), and copy the image file
 * right after the last fsync, while it is still mounted — the copy is what a crash at that moment leaves
 * (commit=300 keeps the transaction from committing first). Besides plain changes: names held in
 * INODE_EXTREF items unlinked (the directory's fsync logs the deletions; an fsync of the file itself would
 * make the kernel commit the transaction instead), an xattr removed, the directory holding a subvolume
 * logged. Needs root and loop devices.
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
for i in range(90, 100):                                     # names held in extended refs unlinked
    os.unlink(m + '/L/' + ('n%03d' % i) * 50)
fsync_path(m + '/L')                                         # (the directory's log drops them)
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
    // 100 names of 200 bytes for one file in one directory: past what one INODE_REF item holds, the rest
    // are INODE_EXTREF items
    mkdirSync(join(mnt, 'L'));
    writeFileSync(join(mnt, 'L', 'f'), 'linked\n');
    for (let i = 0; i < 100; i++) linkSync(join(mnt, 'L', 'f'), join(mnt, 'L', `n${String(i).padStart(3, '0')}`.repeat(50)));
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
