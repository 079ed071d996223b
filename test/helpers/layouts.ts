import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import * as C from '../../src/stream/constants.js';
import type { SendCommand } from '../../src/stream/types.js';
import { b, encodeAll, uuid } from './craft.js';
import { STREAMS_DIR } from './streams.js';

/**
 * Shared by the kernel-view tests: crafted streams for the shapes the target's feature flags change
 * (holes without NO_HOLES, many links without EXTENDED_IREF), the CLI and kernel receives, image hashes.
 */
export const BIN = join(__dirname, '..', '..', 'bin', 'btrfs-ts.js');
const K = 1024n;

export const streamFile = (name: string): string => join(STREAMS_DIR, `${name}.stream`);

/** `btrfs-ts receive -q` of stream files (by path) into `image`, in one process. */
export function tsReceive(image: string, ...streams: string[]): { status: number | null; stderr: string } {
  const input = Buffer.concat(streams.map((s) => readFileSync(s)));
  const r = spawnSync('node', [BIN, 'receive', '-q', image], { input, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

/** The kernel's own `btrfs receive` of stream files into a mounted directory. */
export function kernelReceive(dir: string, ...streams: string[]): { status: number | null; stderr: string } {
  let stderr = '';
  for (const s of streams) {
    const r = spawnSync('btrfs', ['receive', '-f', s, dir], { encoding: 'utf8' });
    stderr += r.stderr;
    if (r.status !== 0) return { status: r.status, stderr };
  }
  return { status: 0, stderr };
}

/** Hash of a whole image, read in 1 MiB pieces (images are hundreds of MiB). */
export function sha256(file: string): string {
  const h = createHash('sha256');
  const buf = Buffer.alloc(1 << 20);
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

const data = (len: number, seed: number): Uint8Array => Uint8Array.from({ length: len }, (_, i) => (i * 131 + seed * 7 + (i >> 9)) & 0xff);

/**
 * Every way a file gets a hole: a write past EOF, truncate up (after data and after an inline extent),
 * a file that is all hole, a punched hole, preallocation past a hole, a clone of a range with holes to
 * an offset past EOF, an unaligned write far past EOF. Then an incremental that fills some holes, punches
 * new ones, truncates into a hole and extends again. Protocol 2 (the kernel's receive applies FALLOCATE).
 */
export function holeStreams(): { full: Uint8Array; incr: Uint8Array } {
  const p = (s: string): Uint8Array => b(s);
  const full: SendCommand[] = [
    { cmd: C.BTRFS_SEND_C_SUBVOL, path: p('holes'), uuid: uuid(41), ctransid: 10n },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: p('past-eof'), ino: 257n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: p('past-eof'), fileOffset: 0n, data: data(4096, 1) },
    { cmd: C.BTRFS_SEND_C_WRITE, path: p('past-eof'), fileOffset: 1024n * K, data: data(8192, 2) },
    { cmd: C.BTRFS_SEND_C_TRUNCATE, path: p('past-eof'), size: 3000n * K + 5n },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: p('all-hole'), ino: 258n },
    { cmd: C.BTRFS_SEND_C_TRUNCATE, path: p('all-hole'), size: 1024n * K },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: p('inline-then-hole'), ino: 259n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: p('inline-then-hole'), fileOffset: 0n, data: data(100, 3) },
    { cmd: C.BTRFS_SEND_C_TRUNCATE, path: p('inline-then-hole'), size: 100000n },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: p('punched'), ino: 260n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: p('punched'), fileOffset: 0n, data: data(65536, 4) },
    { cmd: C.BTRFS_SEND_C_FALLOCATE, path: p('punched'), mode: 3, fileOffset: 8192n, size: 8192n },
    { cmd: C.BTRFS_SEND_C_FALLOCATE, path: p('punched'), mode: 0, fileOffset: 128n * K, size: 128n * K },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: p('cloned'), ino: 261n },
    { cmd: C.BTRFS_SEND_C_CLONE, path: p('cloned'), fileOffset: 64n * K, cloneLen: 1028n * K, cloneUuid: uuid(41), cloneCtransid: 10n, clonePath: p('past-eof'), cloneOffset: 0n },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: p('unaligned'), ino: 262n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: p('unaligned'), fileOffset: 10000n, data: data(3000, 5) },
    ...stamp(['past-eof', 'all-hole', 'inline-then-hole', 'punched', 'cloned', 'unaligned', '']),
    { cmd: C.BTRFS_SEND_C_END },
  ];
  const incr: SendCommand[] = [
    { cmd: C.BTRFS_SEND_C_SNAPSHOT, path: p('holes2'), uuid: uuid(42), ctransid: 11n, cloneUuid: uuid(41), cloneCtransid: 10n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: p('past-eof'), fileOffset: 512n * K, data: data(4096, 6) },
    { cmd: C.BTRFS_SEND_C_TRUNCATE, path: p('past-eof'), size: 2000n * K },
    { cmd: C.BTRFS_SEND_C_TRUNCATE, path: p('past-eof'), size: 2500n * K },
    { cmd: C.BTRFS_SEND_C_WRITE, path: p('all-hole'), fileOffset: 4096n, data: data(4096, 7) },
    { cmd: C.BTRFS_SEND_C_FALLOCATE, path: p('punched'), mode: 3, fileOffset: 0n, size: 64n * K },
    { cmd: C.BTRFS_SEND_C_TRUNCATE, path: p('inline-then-hole'), size: 50n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: p('unaligned'), fileOffset: 200000n, data: data(10, 8) },
    ...stamp(['past-eof', 'all-hole', 'inline-then-hole', 'punched', 'unaligned']),
    { cmd: C.BTRFS_SEND_C_END },
  ];
  return { full: encodeAll(2, full), incr: encodeAll(2, incr) };
}

/** Fixed times, so that trees received at different moments compare equal. */
function stamp(paths: string[]): SendCommand[] {
  const t = { sec: 1600000000n, nsec: 0 };
  return paths.map((x) => ({ cmd: C.BTRFS_SEND_C_UTIMES, path: b(x), atime: t, mtime: t, ctime: t }));
}

/** Name i of the many-links stream: long enough that `count` of them overflow one INODE_REF item. */
export const linkName = (i: number): string => `link-${String(i).padStart(4, '0')}-${'x'.repeat(60)}`;

/** One file with `count` names in one directory (the kernel needs INODE_EXTREF beyond one leaf item). */
export function linksStream(count: number): Uint8Array {
  const cmds: SendCommand[] = [
    { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('links'), uuid: uuid(51), ctransid: 5n },
    { cmd: C.BTRFS_SEND_C_MKDIR, path: b('d'), ino: 257n },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: b(`d/${linkName(0)}`), ino: 258n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: b(`d/${linkName(0)}`), fileOffset: 0n, data: b('shared') },
  ];
  for (let i = 1; i < count; i++) cmds.push({ cmd: C.BTRFS_SEND_C_LINK, path: b(`d/${linkName(i)}`), pathLink: b(`d/${linkName(0)}`) });
  cmds.push({ cmd: C.BTRFS_SEND_C_END });
  return encodeAll(1, cmds);
}
