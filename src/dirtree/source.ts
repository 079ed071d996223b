import { constants, promises as fsp, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { BtrfsTsError } from '../errors.js';
import type { EntryType, Timespec, TreeEntry, TreeSource, Xattr } from '../manifest/types.js';
import { pathKey, readTreeXattrs } from './xattrs.js';
import { dirDescriptor, joinPath, SHORT_PATH, throughShortPath } from '../io/long-paths.js';

/**
 * A mounted directory as a manifest TreeSource. Names are handled as raw bytes throughout (readdir with
 * `encoding: 'buffer'`, Buffer paths to lstat/readlink/open) so non-UTF-8 names survive intact.
 */

export interface DirSourceOptions {
  /** Read xattrs with getfattr (default true). */
  xattrs?: boolean;
}

const READ_CHUNK = 1 << 20;

function typeOf(mode: bigint): EntryType {
  switch (Number(mode) & constants.S_IFMT) {
    case constants.S_IFREG: return 'file';
    case constants.S_IFDIR: return 'dir';
    case constants.S_IFLNK: return 'symlink';
    case constants.S_IFIFO: return 'fifo';
    case constants.S_IFSOCK: return 'sock';
    case constants.S_IFCHR: return 'chr';
    case constants.S_IFBLK: return 'blk';
    default: throw new BtrfsTsError('TREE_TYPE', `unknown file type in mode 0${mode.toString(8)}`);
  }
}

/** Splits nanoseconds since the epoch into btrfs's (signed sec, nsec >= 0) pair, also before 1970. */
export function splitNs(ns: bigint): Timespec {
  let sec = ns / 1_000_000_000n;
  let nsec = ns - sec * 1_000_000_000n;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += 1_000_000_000n;
  }
  return { sec, nsec: Number(nsec) };
}

/** glibc's gnu_dev_major/minor: the user-space dev_t layout that stat() reports. */
export function splitDev(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * The first read gets a buffer of the file's size (+1, to meet EOF in the same read), later reads
 * READ_CHUNK, or a pooled 4 KiB one to confirm EOF after a short read: a fresh 1 MiB buffer for each read
 * of thousands of small files made garbage collection most of a manifest's time (~2 ms per file).
 */
async function* readFileChunks(abs: Buffer, size: bigint): AsyncGenerator<Uint8Array> {
  // O_NOATIME keeps hashing from changing what a later `--atime` manifest sees; it needs ownership or
  // CAP_FOWNER, so fall back to a plain open.
  const fh = await throughShortPath(abs, async (p) => {
    try {
      return await fsp.open(p, constants.O_RDONLY | constants.O_NOATIME);
    } catch {
      return await fsp.open(p, constants.O_RDONLY);
    }
  });
  try {
    let want = size < BigInt(READ_CHUNK) ? Number(size) + 1 : READ_CHUNK;
    for (;;) {
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, null);
      if (bytesRead === 0) return;
      yield buf.subarray(0, bytesRead);
      want = bytesRead === want ? READ_CHUNK : 4096;
    }
  } finally {
    await fh.close();
  }
}

function makeEntry(rel: Buffer, abs: Buffer, st: BigIntStats, target: Buffer | undefined, xattrs: Xattr[]): TreeEntry {
  const type = typeOf(st.mode);
  const e: TreeEntry = {
    path: new Uint8Array(rel),
    type,
    perm: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: st.size,
    mtime: splitNs(st.mtimeNs),
    atime: splitNs(st.atimeNs),
    nlink: Number(st.nlink),
    inodeKey: `${st.dev}:${st.ino}`,
    xattrs,
    readContent: () => readFileChunks(abs, st.size),
  };
  if (type === 'chr' || type === 'blk') e.rdev = splitDev(st.rdev);
  if (target) e.symlinkTarget = new Uint8Array(target);
  return e;
}

export function dirTreeSource(root: string, opts: DirSourceOptions = {}): TreeSource {
  return {
    async *entries(): AsyncGenerator<TreeEntry> {
      const rootAbs = Buffer.from(path.resolve(root));
      const rootSt = await fsp.stat(rootAbs, { bigint: true }).catch((e: unknown) => {
        throw new BtrfsTsError('TREE_OPEN', `cannot read ${root}: ${String(e)}`);
      });
      if (typeOf(rootSt.mode) !== 'dir') throw new BtrfsTsError('TREE_OPEN', `${root} is not a directory`);
      const xattrs = opts.xattrs === false ? new Map<string, Xattr[]>() : await readTreeXattrs(root);
      const x = (rel: Buffer): Xattr[] => xattrs.get(pathKey(rel)) ?? [];
      yield makeEntry(Buffer.alloc(0), rootAbs, rootSt, undefined, x(Buffer.alloc(0)));

      // Paths past SHORT_PATH go through descriptors (long-paths.ts). getfattr names each file by its path
      // from where it runs, so a directory more than SHORT_PATH below the last place it ran from has its
      // xattrs read by a run of its own, from a descriptor of it (`from`: the rel length of that place).
      const stack: { rel: Buffer; from: number }[] = [{ rel: Buffer.alloc(0), from: 0 }];
      while (stack.length > 0) {
        const { rel: dirRel, from } = stack.pop()!;
        const dirAbs = dirRel.length ? joinPath(rootAbs, dirRel) : rootAbs;
        let childFrom = from;
        if (opts.xattrs !== false && dirRel.length - from > SHORT_PATH) {
          const dir = dirDescriptor(dirAbs);
          try {
            for (const [key, xs] of await readTreeXattrs(dir.path.toString('latin1'), dirRel)) xattrs.set(key, xs);
          } finally {
            dir.close();
          }
          childFrom = dirRel.length;
        }
        const names = await throughShortPath(dirAbs, (p) => fsp.readdir(p, { encoding: 'buffer' }));
        for (const name of names) {
          const rel = dirRel.length ? joinPath(dirRel, name) : name;
          const abs = joinPath(rootAbs, rel);
          const st = await throughShortPath(abs, (p) => fsp.lstat(p, { bigint: true }));
          const type = typeOf(st.mode);
          const target = type === 'symlink' ? await throughShortPath(abs, (p) => fsp.readlink(p, { encoding: 'buffer' })) : undefined;
          yield makeEntry(rel, abs, st, target, x(rel));
          if (type === 'dir') stack.push({ rel, from: childFrom });
        }
      }
    },
  };
}
