import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import path from 'node:path';
import { ImageError } from '../errors.js';

/**
 * mkfs --reflink: file data is shared with the rootdir's files instead of copied — each data extent's
 * bytes are cloned (FICLONERANGE) from the source file into the image file at the extent's physical
 * offset, as mkfs.btrfs --reflink does. Both must live on one btrfs filesystem. The data is still read:
 * holes and checksums come from it. Node cannot issue an ioctl, so the clones go in batches to a small
 * python3 helper (fcntl.ioctl); memory holds one batch of ranges at most.
 */

const BTRFS_SUPER_MAGIC = 0x9123683e;
/** Ranges per helper run: bounds memory, and the run's start-up (~30 ms) is spread over many clones. */
const BATCH = 20_000;

const HELPER = String.raw`
import errno, fcntl, os, struct, sys
FICLONERANGE = 0x4020940d  # _IOW(0x94, 13, struct file_clone_range)
img = os.open(sys.argv[1], os.O_RDWR)
cur, fd = None, -1
for line in sys.stdin.buffer:
    p, so, do, n = line.split()
    if p != cur:
        if fd >= 0: os.close(fd)
        cur, fd = p, -1
        fd = os.open(bytes.fromhex(p.decode()), os.O_RDONLY)
    try:
        fcntl.ioctl(img, FICLONERANGE, struct.pack('=qQQQ', fd, int(so), int(n), int(do)))
    except OSError as e:
        sys.stderr.write('%s %s %s %s\n' % (p.decode(), so.decode(), errno.errorcode.get(e.errno, str(e.errno)), e.strerror))
        sys.exit(1)
`;

export class Reflinker {
  private ops: string[] = [];

  /** Refuses, before anything is written, what cannot work: no python3, or rootdir or image not on btrfs. */
  constructor(private readonly image: string, rootdir: string) {
    for (const [what, p] of [['--rootdir', rootdir], ['the image', path.dirname(path.resolve(image))]] as const) {
      const type = fs.statfsSync(p).type;
      if (type !== BTRFS_SUPER_MAGIC) {
        throw new ImageError('MKFS_USAGE', `--reflink: ${what} (${p}) is not on a btrfs filesystem (statfs type 0x${type.toString(16)}); clones need the source files and the image on one btrfs`);
      }
    }
    if (spawnSync('python3', ['-c', ''], { stdio: 'ignore' }).status !== 0) {
      throw new ImageError('MKFS_USAGE', '--reflink needs python3 (Node has no FICLONERANGE ioctl)');
    }
  }

  /** Clone `len` bytes of `src` at `srcOffset` to the image at `physical` (sector-aligned, inside the source). */
  clone(src: Buffer, srcOffset: bigint, physical: bigint, len: number): void {
    this.ops.push(`${src.toString('hex')} ${srcOffset} ${physical} ${len}`);
    if (this.ops.length >= BATCH) this.flush();
  }

  /** Runs the clones collected so far; called before the commit. */
  flush(): void {
    if (this.ops.length === 0) return;
    const r = spawnSync('python3', ['-c', HELPER, this.image], { input: `${this.ops.join('\n')}\n`, encoding: 'utf8', maxBuffer: 1 << 20 });
    this.ops = [];
    if (r.status === 0) return;
    const [hex, off, code, ...why] = (r.stderr || '').trim().split('\n').pop()!.split(' ');
    const src = hex && /^[0-9a-f]+$/.test(hex) ? Buffer.from(hex, 'hex').toString() : '?';
    const hint = code === 'EXDEV' ? ' (the source files and the image must be on one btrfs filesystem)' : '';
    throw new ImageError('MKFS_REFLINK', `--reflink: cloning ${src} at offset ${off} into ${this.image} failed: ${why.join(' ') || r.stderr.trim()} [${code}]${hint}`);
  }
}
