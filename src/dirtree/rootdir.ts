import * as fs from 'node:fs';
import path from 'node:path';
import { ImageError } from '../errors.js';
import type { Populator, SourceStat } from '../image/write/populate.js';
import { type DeviceEntry, deviceModeType } from './device-table.js';
import type { Timespec, Xattr } from '../manifest/types.js';
import { splitDev, splitNs } from './source.js';
import { pathKey, readTreeXattrs } from './xattrs.js';
import { type InodeFlagSpec, inodeFlags } from './inode-flags.js';
import { dirPath, joinPath, namingWhole } from '../io/long-paths.js';
import type { Reflinker } from './reflink.js';

const S_IFMT = 0o170000;
/** How often, at most, the rootdir walk gives the event loop a turn (populateFromDir). */
const YIELD_MS = 50;

/**
 * The node:fs side of `mkfs --rootdir`: walks a directory (names as raw bytes), reads stats with
 * nanosecond times, xattrs (one getfattr run), symlink targets and file contents through a bounded
 * buffer, and feeds them to the pure Populator. Hard links are recognized by (dev, ino).
 */
export interface RootdirSummary {
  inodes: number;
  /** Bytes of file data that will need data extents (allocated size, so sparse files count little). */
  dataBytes: bigint;
  nameBytes: bigint;
  xattrBytes: bigint;
}

/** A quick pass over the tree to size the image before creating it. */
export function surveyRootdir(root: string): RootdirSummary {
  const sum: RootdirSummary = { inodes: 1, dataBytes: 0n, nameBytes: 0n, xattrBytes: 0n };
  const walk = (absDir: Buffer): void => {
    const dir = dirPath(absDir);
    try {
      for (const name of fs.readdirSync(dir.path, { encoding: 'buffer' })) {
        const abs = joinPath(dir.path, name);
        const st = fs.lstatSync(abs, { bigint: true });
        sum.inodes++;
        sum.nameBytes += BigInt(name.length);
        if (st.isFile()) sum.dataBytes += st.blocks * 512n < st.size ? st.blocks * 512n : st.size;
        if (st.isDirectory()) walk(abs);
      }
    } catch (e) {
      throw namingWhole(e, dir.path, absDir);
    } finally {
      dir.close();
    }
  };
  walk(Buffer.from(root));
  return sum;
}

/**
 * Stats as stored. With SOURCE_DATE_EPOCH (`epoch`), only mtime comes from the tree, clamped to the epoch
 * as tar --clamp-mtime does; atime, ctime and birth time are the epoch itself: they change whenever the
 * tree is copied or read (this very walk updates atimes), so no build could reproduce them.
 */
function toSourceStat(st: fs.BigIntStats, epoch: bigint | undefined): SourceStat {
  const { major, minor } = splitDev(st.rdev);
  let times = { atime: splitNs(st.atimeNs), mtime: splitNs(st.mtimeNs), ctime: splitNs(st.ctimeNs), otime: splitNs(st.birthtimeNs) };
  if (epoch !== undefined) {
    const e: Timespec = { sec: epoch, nsec: 0 };
    const m = times.mtime.sec < epoch ? times.mtime : e;
    times = { atime: e, mtime: m, ctime: e, otime: e };
  }
  return {
    mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid),
    // btrfs stores the kernel's dev_t (MKDEV), not glibc's user-space encoding
    rdev: (BigInt(major) << 20n) | BigInt(minor),
    size: st.size,
    ...times,
  };
}

export interface PopulateOptions {
  xattrs?: boolean;
  /** SOURCE_DATE_EPOCH (seconds): see toSourceStat. */
  epoch?: bigint;
  /** mkfs --subvol: directories (relative to the root, '/'-separated) that become subvolumes. */
  subvols?: Map<string, SubvolSpec>;
  /** Uuid of the subvolume made from `rel` (reproducible images); random when absent. */
  subvolUuid?: (rel: string) => Uint8Array;
  /** Creation time of those subvolumes (default: now). */
  now?: Timespec;
  /** mkfs -D: owners and permissions of paths, and device nodes/directories to create (device-table.ts). */
  deviceTable?: Map<string, DeviceEntry>;
  /** mkfs --inode-flags, keyed `${dev}:${ino}` (inode-flags.ts). */
  inodeFlags?: Map<string, InodeFlagSpec>;
  /** mkfs --reflink: file data is cloned from the source files (reflink.ts); the caller flushes it before the commit. */
  reflink?: Reflinker;
  /** Told the bytes of file data read from the tree (progress). */
  onData?: (bytes: number) => void;
}
export interface SubvolSpec {
  readonly: boolean;
  isDefault: boolean;
}

export async function populateFromDir(root: string, pop: Populator, opts: PopulateOptions = {}): Promise<void> {
  const rootAbs = path.resolve(root);
  let rootSt: fs.BigIntStats;
  try {
    rootSt = fs.statSync(rootAbs, { bigint: true });
  } catch (err) {
    throw new ImageError('ROOTDIR', `cannot read --rootdir ${root}: ${(err as Error).message}`, { cause: err });
  }
  if (!rootSt.isDirectory()) throw new ImageError('ROOTDIR', `--rootdir ${root} is not a directory`);
  const xattrs: Map<string, Xattr[]> = opts.xattrs === false ? new Map() : await readTreeXattrs(rootAbs);
  /** The xattrs under a directory reached through a descriptor (long-paths.ts), which the reads above could not name. */
  const readDeepXattrs = async (dir: Buffer, rel: Buffer): Promise<void> => {
    if (opts.xattrs === false) return;
    for (const [key, xs] of await readTreeXattrs(dir.toString('latin1'), rel)) xattrs.set(key, xs);
  };
  const applyXattrs = (p: Populator, rel: Buffer, ino: bigint): void => {
    for (const x of xattrs.get(pathKey(rel)) ?? []) p.setXattr(ino, x.name, x.value);
  };
  const table = opts.deviceTable ?? new Map<string, DeviceEntry>();
  const seen = new Set<string>();
  /** The stat as the device table says: its owner and permissions (and device number) over the tree's. */
  const adjust = (rel: string, sst: SourceStat): SourceStat => {
    const e = table.get(rel);
    if (!e) return sst;
    seen.add(rel);
    if ((sst.mode & S_IFMT) !== deviceModeType(e.type)) {
      throw new ImageError('ROOTDIR', `-D: ${JSON.stringify(Buffer.from(rel, 'latin1').toString())} is not of type ${e.type} in the rootdir`);
    }
    const rdev = e.type === 'c' || e.type === 'b' ? (BigInt(e.major) << 20n) | BigInt(e.minor) : sst.rdev;
    return { ...sst, mode: (sst.mode & S_IFMT) | e.perm, uid: e.uid, gid: e.gid, rdev };
  };
  const flagSpecs = opts.inodeFlags ?? new Map<string, InodeFlagSpec>();
  const withFlags = (st: fs.BigIntStats, sst: SourceStat, parent: bigint): SourceStat => {
    const flags = inodeFlags(sst.mode, flagSpecs.get(`${st.dev}:${st.ino}`), parent);
    return flags ? { ...sst, flags } : sst;
  };
  const rootSst = withFlags(rootSt, adjust('', toSourceStat(rootSt, opts.epoch)), 0n);
  /** Table entries missing from the tree under `relDir`: created with the rootdir's times. */
  const addMissing = (relDir: string, dirIno: bigint, pop: Populator): void => {
    const prefix = relDir ? `${relDir}/` : '';
    for (const e of table.values()) {
      if (seen.has(e.rel) || !e.rel.startsWith(prefix) || e.rel.length <= prefix.length || e.rel.slice(prefix.length).includes('/')) continue;
      if (e.type === 'f') throw new ImageError('ROOTDIR', `-D: regular file ${JSON.stringify(Buffer.from(e.rel, 'latin1').toString())} is not in the rootdir`);
      seen.add(e.rel);
      const rdev = e.type === 'c' || e.type === 'b' ? (BigInt(e.major) << 20n) | BigInt(e.minor) : 0n;
      const st: SourceStat = { ...rootSst, mode: deviceModeType(e.type) | e.perm, uid: e.uid, gid: e.gid, rdev, size: 0n };
      const ino = pop.addNode(dirIno, new Uint8Array(Buffer.from(e.rel.slice(prefix.length), 'latin1')), st);
      if (e.type === 'd') addMissing(e.rel, ino, pop);
    }
  };
  pop.setTopDirAttrs(rootSst);
  applyXattrs(pop, Buffer.alloc(0), pop.topDir);

  const links = new Map<string, bigint>();
  const buf = Buffer.allocUnsafe(1 << 20);
  // The walk turns the event loop now and then: a synchronous walk of a large tree ran to its end with
  // Ctrl-C pending (mkfs -r of /usr/lib: 10 s, status 0). A turn per YIELD_MS lets the signal handlers run.
  let lastTurn = Date.now();
  // hard links are per subvolume: a name in another subvolume gets its own copy
  // `dirFlags`: the flags of the directory being walked, which its new inodes inherit
  // a directory past SHORT_PATH is walked through a descriptor of it (long-paths.ts); clones queued with
  // paths through that descriptor run before it closes
  const walk = async (absDir: Buffer, relDir: Buffer, dirIno: bigint, pop: Populator, dirFlags: bigint): Promise<void> => {
    const dir = dirPath(absDir);
    try {
      if (dir.path !== absDir) await readDeepXattrs(dir.path, relDir);
      await walkDir(dir.path, relDir, dirIno, pop, dirFlags);
    } catch (e) {
      throw namingWhole(e, dir.path, absDir);
    } finally {
      if (dir.path !== absDir) opts.reflink?.flush();
      dir.close();
    }
  };
  const walkDir = async (absDir: Buffer, relDir: Buffer, dirIno: bigint, pop: Populator, dirFlags: bigint): Promise<void> => {
    const names = fs.readdirSync(absDir, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const name of names) {
      if (Date.now() - lastTurn >= YIELD_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        lastTurn = Date.now();
      }
      const abs = joinPath(absDir, name);
      const rel = relDir.length ? joinPath(relDir, name) : name;
      const st = fs.lstatSync(abs, { bigint: true });
      const nm = new Uint8Array(name);
      const linkKey = `${pop.root}:${st.dev}:${st.ino}`;
      if (!st.isDirectory() && st.nlink > 1n) {
        const prev = links.get(linkKey);
        if (prev !== undefined) {
          pop.addLink(dirIno, nm, prev);
          continue;
        }
      }
      const plain = adjust(rel.toString('latin1'), toSourceStat(st, opts.epoch));
      let ino: bigint;
      const sub = st.isDirectory() ? opts.subvols?.get(rel.toString('latin1')) : undefined;
      if (sub) {
        // a subvolume's top directory inherits nothing, as with the kernel
        const top = withFlags(st, plain, 0n);
        const relName = rel.toString('latin1');
        const child = pop.addSubvolume(dirIno, nm, top, { ...sub, uuid: opts.subvolUuid?.(relName), time: opts.now });
        applyXattrs(child, rel, child.topDir);
        await walk(abs, rel, child.topDir, child, top.flags ?? 0n);
        continue;
      }
      const sst = withFlags(st, plain, dirFlags);
      if (st.isDirectory()) {
        ino = pop.addNode(dirIno, nm, sst);
        applyXattrs(pop, rel, ino);
        await walk(abs, rel, ino, pop, sst.flags ?? 0n);
        continue;
      } else if (st.isSymbolicLink()) {
        ino = pop.addSymlink(dirIno, nm, sst, new Uint8Array(fs.readlinkSync(abs, { encoding: 'buffer' })));
      } else if (st.isFile()) {
        const fd = fs.openSync(abs, 'r');
        try {
          ino = pop.addFile(dirIno, nm, sst, (offset, len) => {
            let got = 0;
            while (got < len) {
              const n = fs.readSync(fd, buf, got, len - got, Number(offset) + got);
              if (n === 0) break;
              got += n;
            }
            opts.onData?.(got);
            return new Uint8Array(buf.buffer, buf.byteOffset, got);
          }, opts.reflink ? (offset, physical, len) => opts.reflink!.clone(abs, offset, physical, len) : undefined);
        } finally {
          fs.closeSync(fd);
        }
      } else {
        ino = pop.addNode(dirIno, nm, sst);
      }
      applyXattrs(pop, rel, ino);
      if (st.nlink > 1n) links.set(linkKey, ino);
    }
    addMissing(relDir.toString('latin1'), dirIno, pop);
  };
  await walk(Buffer.from(rootAbs), Buffer.alloc(0), pop.topDir, pop, rootSst.flags ?? 0n);
  for (const e of table.values()) {
    if (!seen.has(e.rel)) throw new ImageError('ROOTDIR', `-D: the directory holding ${JSON.stringify(Buffer.from(e.rel, 'latin1').toString())} is not in the image`);
  }
}
