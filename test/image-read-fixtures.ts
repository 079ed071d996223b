import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { skipReason } from './image-write-helpers.js';
import { BtrfsImage } from '../src/image/read/index.js';
import { imageTreeSource } from '../src/image/read/tree-source.js';
import type { Location } from '../src/image/read/index.js';
import { dirTreeSource } from '../src/dirtree/source.js';
import { formatManifest } from '../src/manifest/format.js';

/** Shared setup for the reader's kernel tests: build images, mount them, compare manifests. */

/** Why the reader's kernel tests cannot run here, or null (one check for all kernel tests). */
export function canUseKernel(): string | null {
  return skipReason('mount') ?? null;
}

export function sh(script: string, env: Record<string, string> = {}): string {
  return execFileSync('bash', ['-euo', 'pipefail', '-c', script], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 28 });
}

export function makeImage(path: string, size = '256M', mkfsArgs: string[] = []): void {
  writeFileSync(path, '');
  sh(`truncate -s ${size} "$IMG" && mkfs.btrfs -q -f ${mkfsArgs.join(' ')} "$IMG" >/dev/null`, { IMG: path });
}

/** Mounts `img` at a fresh dir under `base`, runs fn, always unmounts (the loop device goes with it). */
export async function withMount<T>(img: string, base: string, opts: string, fn: (mnt: string) => Promise<T>): Promise<T> {
  const mnt = join(base, `mnt-${Math.random().toString(36).slice(2)}`);
  mkdirSync(mnt);
  sh(`mount -o loop,${opts} "$IMG" "$MNT"`, { IMG: img, MNT: mnt });
  try {
    return await fn(mnt);
  } finally {
    sh(`umount "$MNT" || umount -l "$MNT"`, { MNT: mnt });
  }
}

export async function collect(lines: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of lines) out.push(l);
  return out;
}

const MANIFEST_OPTS = { nlink: true, skipXattrPrefixes: ['security.selinux'] };

export async function kernelManifest(dir: string): Promise<string[]> {
  return collect(formatManifest(dirTreeSource(dir), MANIFEST_OPTS));
}

export async function imageManifest(img: BtrfsImage, start?: Location): Promise<string[]> {
  return collect(formatManifest(imageTreeSource(img, start ?? (await img.root())), MANIFEST_OPTS));
}

/**
 * Fills a mounted filesystem with everything the reader must handle: files under each compression
 * (the mount's compress= is switched by remount), inline and compressed inline data, sparse files,
 * prealloc, reflinks (whole and partial), an extent overwritten in the middle, xattrs (small and
 * large), hard links, symlinks, special files, many small files (multi-level trees), subvolumes,
 * nested subvolumes and snapshots (rw and read-only).
 */
export function populate(mnt: string, img: string): void {
  sh(String.raw`
    cd "$MNT"
    text() { for i in $(seq 1 "$1"); do echo "line $i of some quite compressible text, the quick brown fox"; done; }
    for alg in zlib lzo zstd; do
      mount -o remount,compress=$alg "$MNT"
      mkdir -p c/$alg
      text 20000 > c/$alg/text
      head -c 3000 /dev/zero | tr '\0' 'a' > c/$alg/inline-compressed
      head -c 300000 /dev/urandom > c/$alg/random
      # a compressed extent referenced partially
      text 5000 > c/$alg/partial; sync
      dd if=/dev/urandom of=c/$alg/partial bs=4096 seek=10 count=3 conv=notrunc status=none
    done
    mount -o remount,compress=no "$MNT"
    echo hello > small
    printf 'no newline' > small2
    head -c 1048576 /dev/urandom > big
    sync
    dd if=/dev/urandom of=big bs=4096 seek=100 count=5 conv=notrunc status=none
    truncate -s 10M sparse
    dd if=/dev/urandom of=sparse bs=4096 seek=700 count=3 conv=notrunc status=none
    printf 'tail' >> sparse
    truncate -s 20000 sparse-tail
    fallocate -l 1M prealloc
    fallocate -l 512K prealloc-part && dd if=/dev/urandom of=prealloc-part bs=4096 seek=16 count=2 conv=notrunc status=none
    cp --reflink=always big big.reflink
    cp --reflink=always c/zstd/text text.reflink
    head -c 262144 /dev/urandom > rsrc
    xfs_io -f -c "reflink rsrc 65536 0 65536" -c "reflink rsrc 0 131072 8192" rpart >/dev/null
    setfattr -n user.small -v value small
    setfattr -n user.empty small2
    setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' 'x')" big
    setfattr -n trusted.t -v 0x00ff00 small
    mkdir -p links/a links/b
    echo linked > links/a/orig
    ln links/a/orig links/b/second
    ln links/a/orig links/a/third
    ln -s ../small links/sym
    ln -s "$(head -c 200 /dev/zero | tr '\0' 'p')" links/longsym
    mkfifo fifo
    mknod chr c 1 3
    mknod blk b 7 200
    chown 1234:5678 small2; chmod 4750 small2
    chmod 1777 links/b
    mkdir xref; echo x > xref/f
    for i in $(seq 1 120); do ln xref/f "xref/$(printf '%0200d' $i)"; done
    mkdir many
    for i in $(seq 1 1500); do echo $i > many/file-$i; done
    touch -d '1999-12-31 23:59:59.123456789' small
    touch -d '1960-06-01 12:00:00.25' old
    touch "$(printf 'raw-\xff\xfe-name')" 'sp ace' 'new
line'
    /usr/bin/python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('sock')" 
    touch -h -d '2001-02-03 04:05:06.5' links/sym
    btrfs -q subvolume create sub
    echo in-sub > sub/f
    mkdir sub/d
    btrfs -q subvolume create sub/d/nested
    echo nested > sub/d/nested/n
    cp --reflink=always big sub/big.reflink
    btrfs -q subvolume snapshot sub snap
    echo changed > snap/f
    btrfs -q subvolume snapshot -r sub snap-ro
    mkdir recv
    btrfs -q send snap-ro | btrfs -q receive recv
    sync
  `, { MNT: mnt, IMG: img });
}
