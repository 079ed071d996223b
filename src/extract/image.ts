import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { BtrfsTsError, ImageError } from '../errors.js';
import type { BtrfsImage, DirEntry, Location } from '../image/read/index.js';
import { timespecNs, type BtrfsTimespec } from '../image/structs.js';
import { makeDirs } from './fs.js';
import { throughShortPath as at } from '../io/long-paths.js';
import { makeSocket, writeFileKeepingHoles } from './make-file.js';
import { SyscallHelper } from './syscall-helper.js';
import { XattrDump } from './xattr-dump.js';

/**
 * Copies a tree out of an image into a local directory: content, modes, owners (when root), times,
 * xattrs, symlinks, hard links and special files. Everything is created fresh (O_EXCL, no following of
 * symlinks) below `dest`, and names from the image are checked, so a hostile image cannot write outside.
 */

export interface ExtractOptions {
  /** Restore uid/gid (default: when running as root). */
  owners?: boolean;
  /** Restore xattrs with `setfattr --restore` (default true; skipped with a warning if setfattr is missing). */
  xattrs?: boolean;
  warn?: (msg: string) => void;
  /** Name for a non-directory source (its last path component). */
  name?: Uint8Array;
  /** Told the bytes of file data written and each entry made (progress). */
  onData?: (bytes: number) => void;
  onEntry?: () => void;
}

export interface ExtractStats {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  specials: number;
  skipped: number;
}

const SLASH = Buffer.from('/');
const S_IFMT = 0o170000;

function checkName(name: Uint8Array, where: Buffer): void {
  const s = Buffer.from(name);
  if (s.length === 0 || s.includes(0x2f) || s.includes(0) || s.equals(Buffer.from('.')) || s.equals(Buffer.from('..'))) {
    throw new ImageError('IMAGE_BAD_NAME', `refusing to extract entry named ${JSON.stringify(s.toString('latin1'))} in ${where.toString('latin1')}`);
  }
}

/**
 * utimes takes seconds as a double and libuv truncates it (toward zero) to microseconds: aim at the middle
 * of the wanted microsecond, on the side away from zero, so truncation lands on it. Passed as a numeric
 * string because Node replaces negative numbers (times before 1970) with "now" but not strings.
 */
const toDate = (t: BtrfsTimespec): string => {
  const x = Number(t.sec) + Math.floor(t.nsec / 1000) / 1e6;
  return String(x < 0 ? x - 5e-7 : x + 5e-7);
};

export async function extractTree(img: BtrfsImage, start: Location, dest: string, opts: ExtractOptions = {}): Promise<ExtractStats> {
  const isRoot = process.getuid?.() === 0;
  const owners = opts.owners ?? isRoot;
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`btrfs-ts: WARNING: ${m}\n`));
  const stats: ExtractStats = { files: 0, dirs: 0, symlinks: 0, hardlinks: 0, specials: 0, skipped: 0 };
  const linked = new Map<string, Buffer>();
  const dirsSeen = new Set<string>();
  const xattrDump = new XattrDump();
  const root = Buffer.from(dest);
  await makeDirs(root);
  if ((await fsp.readdir(root)).length > 0) throw new ImageError('EXTRACT_DEST_NOT_EMPTY', `destination ${dest} is not empty`);

  const finish = async (p: Buffer, rel: Buffer, loc: Location, isLink: boolean): Promise<void> => {
    const st = await img.stat(loc);
    if (owners) await at(p, (s) => fsp.lchown(s, st.uid, st.gid));
    const xs = opts.xattrs === false ? [] : await img.xattrs(loc);
    xattrDump.add(rel, xs);
    if (!isLink) await at(p, (s) => fsp.chmod(s, st.mode & 0o7777));
    await setTimes(p, st.atime, st.mtime);
  };

  const makeSpecial = async (p: Buffer, kind: string, mode: number, rdev: bigint): Promise<boolean> => {
    // Node cannot mknod: create under a plain temporary name with mknod(1), then rename to the raw name.
    const tmp = Buffer.concat([root, Buffer.from(`/.btrfs-ts-mknod-${process.pid}-${stats.specials}`)]);
    const args = kind === 'p' ? [tmp.toString('latin1'), 'p'] : [tmp.toString('latin1'), kind, String((rdev >> 20n) & 0xfffn), String(rdev & 0xfffffn)];
    const r = spawnSync('mknod', ['-m', (mode & 0o777).toString(8), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) {
      warn(`cannot create special file ${p.toString('latin1')}: ${r.error?.message ?? r.stderr.toString().trim()}`);
      return false;
    }
    await at(p, (s) => fsp.rename(tmp, s));
    return true;
  };

  const visit = async (loc: Location, p: Buffer, rel: Buffer): Promise<void> => {
    opts.onEntry?.();
    const st = await img.stat(loc);
    const type = st.mode & S_IFMT;
    const key = `${loc.root}:${loc.ino}`;
    if (type !== 0o040000 && st.nlink > 1) {
      const first = linked.get(key);
      if (first) {
        await at(first, (f) => at(p, (s) => fsp.link(f, s)));
        stats.hardlinks++;
        return;
      }
      linked.set(key, p);
    }
    switch (type) {
      case 0o040000: {
        if (!loc.emptySubvolDir && dirsSeen.has(key)) throw new ImageError('IMAGE_DIR_CYCLE', `directory inode ${loc.ino} of subvolume ${loc.root} is reached twice (at ${p.toString('latin1')})`);
        dirsSeen.add(key);
        await at(p, (s) => fsp.mkdir(s, { mode: 0o700 }));
        stats.dirs++;
        for await (const e of uniqueEntries(img, loc, p, warn)) {
          const nb = Buffer.from(e.name);
          await visitChecked(e.location, Buffer.concat([p, SLASH, nb]), rel.length ? Buffer.concat([rel, SLASH, nb]) : nb);
        }
        break;
      }
      case 0o100000: {
        await writeFileKeepingHoles(img, loc, p, opts.onData);
        stats.files++;
        break;
      }
      case 0o120000: {
        const target = await img.readlink(loc);
        // a target cut to nothing (all NUL, as btrfs-image dumps leave inline data): symlink(2) refuses an
        // empty target (ENOENT), so the name is left out with a warning, like a special file mknod refuses
        if (target.length === 0) {
          warn(`symlink ${p.toString('latin1')} (inode ${loc.ino} of subvolume ${loc.root}) has an empty target, which cannot be created: skipped`);
          stats.skipped++;
          linked.delete(key);
          return;
        }
        await at(p, (s) => fsp.symlink(Buffer.from(target), s));
        stats.symlinks++;
        await finish(p, rel, loc, true);
        return;
      }
      case 0o010000: case 0o020000: case 0o060000: case 0o140000: {
        const kind = type === 0o010000 ? 'p' : type === 0o020000 ? 'c' : type === 0o060000 ? 'b' : 's';
        if (kind === 's' ? !(await makeSocket(root, p, warn)) : false) {
          stats.skipped++;
          linked.delete(key);
          return;
        }
        if (kind === 's') {
          stats.specials++;
          break;
        }
        if (kind !== 'p' && !isRoot) {
          warn(`skipping device node (needs root) ${p.toString('latin1')}`);
          stats.skipped++;
          linked.delete(key);
          return;
        }
        if (!(await makeSpecial(p, kind, st.mode, st.rdev))) {
          stats.skipped++;
          linked.delete(key);
          return;
        }
        stats.specials++;
        break;
      }
      default:
        throw new ImageError('IMAGE_BAD_MODE', `inode ${loc.ino} of subvolume ${loc.root} has unknown mode 0${st.mode.toString(8)}`);
    }
    await finish(p, rel, loc, false);
  };

  /** Host errors (EEXIST, ENOSPC, EFBIG, ...) become one line naming the path being created. */
  const visitChecked = async (loc: Location, p: Buffer, rel: Buffer): Promise<void> => {
    try {
      await visit(loc, p, rel);
    } catch (err) {
      if (err instanceof BtrfsTsError) throw err;
      throw new BtrfsTsError('EXTRACT_IO', `cannot extract ${p.toString('latin1')}: ${(err as Error).message}`, { path: rel.toString('latin1'), cause: err });
    }
  };

  // nanosecond times through the python helper (utimensat); fs.lutimes keeps microseconds only
  const helper = new SyscallHelper();
  const setTimes = async (p: Buffer, atime: BtrfsTimespec, mtime: BtrfsTimespec): Promise<void> => {
    if (helper.available) await at(p, (s) => helper.utime(s, timespecNs(atime), timespecNs(mtime)));
    else await at(p, (s) => fsp.lutimes(s, toDate(atime), toDate(mtime)));
  };
  try {
    const st = await img.stat(start);
    if ((st.mode & S_IFMT) === 0o040000) {
      // A directory's contents go into dest itself (like `cp -a SRC/. DEST`).
      for await (const e of uniqueEntries(img, start, root, warn)) {
        const nb = Buffer.from(e.name);
        await visitChecked(e.location, Buffer.concat([root, SLASH, nb]), nb);
      }
      await finish(root, Buffer.alloc(0), start, false);
    } else {
      // A single non-directory lands in dest under its own name.
      const name = opts.name ?? new TextEncoder().encode('extracted');
      checkName(name, root);
      const nb = Buffer.from(name);
      await visitChecked(start, Buffer.concat([root, SLASH, nb]), nb);
    }
    xattrDump.restore(dest, warn);
    // Directory times last, deepest first: creating children bumped them.
    if ((st.mode & S_IFMT) === 0o040000) await fixDirTimes(img, start, root, setTimes);
    return stats;
  } finally {
    await helper.close();
  }
}

/**
 * A directory's entries, each name once: a damaged directory can hold two entries of one name, which a
 * mount shows as one file (the lookup finds the first); the repeat is skipped with a warning.
 */
async function* uniqueEntries(img: BtrfsImage, dir: Location, p: Buffer, warn: (m: string) => void): AsyncGenerator<DirEntry> {
  const seen = new Set<string>();
  for await (const e of img.readdir(dir)) {
    checkName(e.name, p);
    const k = Buffer.from(e.name).toString('latin1');
    if (seen.has(k)) {
      warn(`directory ${p.toString('latin1')} holds two entries named ${JSON.stringify(k)}; extracted the one a lookup finds`);
      continue;
    }
    seen.add(k);
    yield e;
  }
}

type SetTimes = (p: Buffer, atime: BtrfsTimespec, mtime: BtrfsTimespec) => Promise<void>;

async function fixDirTimes(img: BtrfsImage, loc: Location, p: Buffer, setTimes: SetTimes): Promise<void> {
  for await (const e of img.readdir(loc)) {
    if (e.type === 2) await fixDirTimes(img, e.location, Buffer.concat([p, SLASH, Buffer.from(e.name)]), setTimes);
  }
  const st = await img.stat(loc);
  await setTimes(p, st.atime, st.mtime);
}
