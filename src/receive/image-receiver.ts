import type { BtrfsCompressType } from '../compress/index.js';
import { ReceiveError } from '../errors.js';
import { BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID } from '../image/structs/constants.js';
import type { BtrfsTimespec } from '../image/structs/fs-items.js';
import { nowTimespec } from '../image/write/create.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { writeInlineExtent } from '../image/write/file-data.js';
import { createInode, getInode, linkInode, lookupDirEntry, removeXattr, setXattr, unlinkEntry, updateInode } from '../image/write/inode.js';
import { createSubvolume, setReceivedSubvol, setSubvolReadonly, updateRootItem } from '../image/write/subvol.js';
import { PlanReport } from '../plan/report.js';
import { codecName, planEncodedWrite } from '../plan/rules.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../stream/constants.js';
import type { Receiver } from '../stream/receiver.js';
import type * as T from '../stream/types.js';
import { escapePath } from '../dump/escape.js';
import { cloneRange } from './clone.js';
import { FileWriter } from './file-write.js';
import { deleteInode, dirIsEmpty, isAncestor, isDirMode, resolveExisting, resolvePath, S_IFDIR, S_IFLNK, S_IFREG } from './namespace.js';
import { findSubvolByUuid, missingParent, snapshotSubvolume } from './snapshot.js';
import { fallocate } from './fallocate.js';
import { checkFileRange, checkXattrName, checkXattrValue, decodeEncodedData } from './limits.js';

export interface ImageReceiverOptions {
  /** Directory the subvolumes are created in (default: the top level, subvolume 5, directory 256). */
  dest?: { root: bigint; dir: bigint };
  forceDecompress?: boolean;
  compress?: { type: BtrfsCompressType; level?: number };
  /** Decode every passed-through extent before storing it (the kernel does not). */
  checkExtents?: boolean;
  /** Called when a subvolume is complete; the caller commits there. */
  onSubvolumeDone?: (s: ReceivedSubvol) => void | Promise<void>;
}

export interface ReceivedSubvol {
  rootid: bigint;
  name: string;
  receivedUuid: Uint8Array;
  stransid: bigint;
  parentUuid?: Uint8Array;
}

interface Current {
  rootid: bigint;
  name: Uint8Array;
  uuid: Uint8Array;
  ctransid: bigint;
  parentUuid?: Uint8Array;
}

const S_IFIFO = 0o010000;
const S_IFSOCK = 0o140000;

/**
 * Applies send commands to an in-memory filesystem model, the way the kernel's `btrfs receive` changes a
 * mounted btrfs: the same inodes, names, extents and attributes come out. Paths are confined to the
 * subvolume being received. Nothing reaches the image file's metadata until a subvolume is complete and
 * the caller commits.
 */
export class ImageReceiver implements Receiver {
  readonly writer: FileWriter;
  readonly report = new PlanReport();
  private cur: Current | undefined;
  private readonly dest: { root: bigint; dir: bigint };
  readonly received: ReceivedSubvol[] = [];

  constructor(private readonly fs: Filesystem, private readonly opts: ImageReceiverOptions = {}) {
    this.writer = new FileWriter(fs, opts.compress ? { compress: opts.compress } : {});
    this.dest = opts.dest ?? { root: BTRFS_FS_TREE_OBJECTID, dir: BTRFS_FIRST_FREE_OBJECTID };
  }

  private get root(): bigint {
    if (!this.cur) throw new ReceiveError('no-subvolume', 'command before any SUBVOL or SNAPSHOT');
    return this.cur.rootid;
  }

  /** Everything not yet in the model (gathered writes) goes in; called before commits and reads. */
  flush(): void {
    this.writer.flush();
  }

  private async finishSubvol(): Promise<void> {
    const c = this.cur;
    if (!c) return;
    this.writer.flush();
    this.cur = undefined;
    updateRootItem(this.fs, c.rootid, { ctransid: this.fs.transid, ctime: nowTimespec() });
    setReceivedSubvol(this.fs, c.rootid, { receivedUuid: c.uuid, stransid: c.ctransid });
    setSubvolReadonly(this.fs, c.rootid, true);
    const done: ReceivedSubvol = { rootid: c.rootid, name: Buffer.from(c.name).toString('latin1'), receivedUuid: c.uuid, stransid: c.ctransid };
    if (c.parentUuid) done.parentUuid = c.parentUuid;
    this.received.push(done);
    await this.opts.onSubvolumeDone?.(done);
  }

  private subvolName(path: Uint8Array): Uint8Array {
    const parts = resolvePathParts(path);
    if (lookupDirEntry(this.fs, this.dest.root, this.dest.dir, parts)) {
      throw new ReceiveError('subvolume-exists', `a file or subvolume named ${escapePath(parts)} already exists where the subvolume would be created`);
    }
    return parts;
  }

  async subvol(c: T.SubvolCmd): Promise<void> {
    await this.finishSubvol();
    const name = this.subvolName(c.path);
    const rootid = createSubvolume(this.fs, { parentRoot: this.dest.root, parentDir: this.dest.dir, name });
    this.cur = { rootid, name, uuid: c.uuid, ctransid: c.ctransid };
  }

  async snapshot(c: T.SnapshotCmd): Promise<void> {
    await this.finishSubvol();
    const name = this.subvolName(c.path);
    const source = findSubvolByUuid(this.fs, c.cloneUuid);
    if (source === undefined) throw missingParent(c.cloneUuid, 'snapshot parent');
    const rootid = snapshotSubvolume(this.fs, source, { parentRoot: this.dest.root, parentDir: this.dest.dir, name });
    this.cur = { rootid, name, uuid: c.uuid, ctransid: c.ctransid, parentUuid: c.cloneUuid };
  }

  private create(path: Uint8Array, mode: number, rdev = 0n): bigint {
    this.writer.flush();
    const r = resolvePath(this.fs, this.root, path);
    if (r.ino !== undefined) throw new ReceiveError('path-exists', 'path already exists');
    const now = nowTimespec();
    const ino = createInode(this.fs, this.root, { mode, rdev, atime: now, mtime: now, ctime: now, otime: now });
    linkInode(this.fs, this.root, r.dir, r.name, ino);
    this.touch(r.dir);
    return ino;
  }

  mkfile(c: T.CreateCmd): void { this.create(c.path, S_IFREG | 0o600); }
  mkdir(c: T.CreateCmd): void { this.create(c.path, S_IFDIR | 0o700); }
  mknod(c: T.CreateCmd): void {
    const mode = Number(c.mode ?? 0n);
    const t = mode & 0o170000;
    if (t !== 0o020000 && t !== 0o060000 && t !== S_IFIFO && t !== S_IFSOCK) {
      throw new ReceiveError('bad-mknod-mode', `MKNOD with mode 0${mode.toString(8)}: not a device, fifo or socket`);
    }
    this.create(c.path, mode, kernelDev(c.rdev ?? 0n));
  }
  mkfifo(c: T.CreateCmd): void { this.create(c.path, S_IFIFO | 0o600); }
  mksock(c: T.CreateCmd): void { this.create(c.path, S_IFSOCK | 0o600); }
  symlink(c: T.SymlinkCmd): void {
    if (c.pathLink.length === 0 || c.pathLink.includes(0)) throw new ReceiveError('bad-symlink', 'symlink target is empty or contains NUL');
    // symlink(2) takes at most PATH_MAX bytes with the NUL: longer ones fail btrfs check (inline extent
    // too large) and the kernel reads them cut at 4096 bytes
    if (c.pathLink.length >= 4096) throw new ReceiveError('bad-symlink', `symlink target of ${c.pathLink.length} bytes (at most 4095)`);
    const ino = this.create(c.path, S_IFLNK | 0o777);
    // a symlink's target is always one uncompressed inline extent (the kernel's btrfs_symlink); it is
    // stored, never followed
    writeInlineExtent(this.fs, this.root, ino, c.pathLink);
    updateInode(this.fs, this.root, ino, { size: BigInt(c.pathLink.length) });
  }

  rename(c: T.RenameCmd): void {
    this.writer.flush();
    const fs = this.fs;
    const root = this.root;
    const from = resolveExisting(fs, root, c.path, 'rename source');
    if (from.ino === BTRFS_FIRST_FREE_OBJECTID) throw new ReceiveError('rename-root', 'cannot rename the subvolume root');
    const to = resolvePath(fs, root, c.pathTo, 'rename destination');
    const fromIsDir = isDirMode(from.inode.mode);
    if (fromIsDir && isAncestor(fs, root, from.ino, to.dir)) {
      throw new ReceiveError('rename-into-self', 'cannot move a directory into itself');
    }
    if (to.ino !== undefined) {
      if (to.ino === from.ino) return;
      const toIsDir = isDirMode(to.inode!.mode);
      if (toIsDir !== fromIsDir) throw new ReceiveError('rename-type-mismatch', `rename ${fromIsDir ? 'directory over non-directory' : 'non-directory over directory'}`);
      if (toIsDir && !dirIsEmpty(fs, root, to.ino)) throw new ReceiveError('dir-not-empty', 'rename over a non-empty directory');
      this.removeName(to.dir, to.name, to.ino);
    }
    unlinkEntry(fs, root, from.dir, from.name);
    linkInode(fs, root, to.dir, to.name, from.ino);
    this.touch(from.dir);
    this.touch(to.dir);
    this.touch(from.ino, false);
  }

  /**
   * What the kernel does to a directory whose entries change (and to an inode whose links change): its
   * times become "now". The sender follows with UTIMES for every directory it changed, but not for the
   * top directory when only orphan names passed through it — there the kernel's result shows the receive
   * time too.
   */
  private touch(ino: bigint, dir = true): void {
    const now = nowTimespec();
    updateInode(this.fs, this.root, ino, dir ? { mtime: now, ctime: now } : { ctime: now });
  }

  private removeName(dir: bigint, name: Uint8Array, ino: bigint): void {
    unlinkEntry(this.fs, this.root, dir, name);
    this.touch(dir);
    const left = getInode(this.fs, this.root, ino);
    if (left && (left.nlink === 0 || isDirMode(left.mode))) deleteInode(this.fs, this.root, ino);
  }

  link(c: T.LinkCmd): void {
    this.writer.flush();
    const target = resolveExisting(this.fs, this.root, c.pathLink, 'link target');
    if (isDirMode(target.inode.mode)) throw new ReceiveError('link-to-dir', 'hard link to a directory');
    // BTRFS_LINK_MAX: the kernel says EMLINK; it also bounds the work one inode's names can cost
    if (target.inode.nlink >= 65535) throw new ReceiveError('too-many-links', `link target already has ${target.inode.nlink} links (at most 65535)`);
    const r = resolvePath(this.fs, this.root, c.path);
    if (r.ino !== undefined) throw new ReceiveError('path-exists', 'path already exists');
    linkInode(this.fs, this.root, r.dir, r.name, target.ino);
    this.touch(r.dir);
    this.touch(target.ino, false);
  }

  unlink(c: T.UnlinkCmd): void {
    this.writer.flush();
    const r = resolveExisting(this.fs, this.root, c.path);
    if (isDirMode(r.inode.mode)) throw new ReceiveError('is-a-dir', 'UNLINK of a directory');
    this.removeName(r.dir, r.name, r.ino);
  }

  rmdir(c: T.UnlinkCmd): void {
    this.writer.flush();
    const r = resolveExisting(this.fs, this.root, c.path);
    if (!isDirMode(r.inode.mode)) throw new ReceiveError('not-a-dir', 'RMDIR of a non-directory');
    if (r.ino === BTRFS_FIRST_FREE_OBJECTID) throw new ReceiveError('rmdir-root', 'cannot remove the subvolume root');
    if (!dirIsEmpty(this.fs, this.root, r.ino)) throw new ReceiveError('dir-not-empty', 'RMDIR of a non-empty directory');
    this.removeName(r.dir, r.name, r.ino);
  }

  private file(path: Uint8Array, what = 'path'): { ino: bigint; size: bigint } {
    const r = resolveExisting(this.fs, this.root, path, what);
    if ((r.inode.mode & 0o170000) !== S_IFREG) throw new ReceiveError('not-a-file', `${what} is not a regular file`);
    return { ino: r.ino, size: r.inode.size };
  }

  private attrsOf(path: Uint8Array): bigint {
    this.writer.flush();
    return resolveExisting(this.fs, this.root, path).ino;
  }

  setXattr(c: T.SetXattrCmd): void {
    checkXattrName(c.name);
    checkXattrValue(c.name, c.data);
    setXattr(this.fs, this.root, this.attrsOf(c.path), c.name, c.data);
  }
  removeXattr(c: T.RemoveXattrCmd): void {
    if (!removeXattr(this.fs, this.root, this.attrsOf(c.path), c.name)) throw new ReceiveError('no-xattr', `no xattr ${escapePath(c.name)} to remove`);
  }

  write(c: T.WriteCmd): void {
    checkFileRange('write', c.fileOffset, BigInt(c.data.length));
    const f = this.file(c.path);
    this.writer.write(this.root, f.ino, c.fileOffset, c.data);
    this.report.addPlainWrite(c.data.length);
  }

  clone(c: T.CloneCmd): void {
    checkFileRange('clone destination', c.fileOffset, c.cloneLen);
    checkFileRange('clone source', c.cloneOffset, c.cloneLen);
    this.writer.flush();
    const dst = this.file(c.path, 'clone destination');
    const cur = this.cur!;
    const srcRoot = sameBytes(c.cloneUuid, cur.uuid) ? cur.rootid : findSubvolByUuid(this.fs, c.cloneUuid);
    if (srcRoot === undefined) throw missingParent(c.cloneUuid, 'clone source subvolume');
    const src = resolveExisting(this.fs, srcRoot, c.clonePath, 'clone source');
    if ((src.inode.mode & 0o170000) !== S_IFREG) throw new ReceiveError('not-a-file', 'clone source is not a regular file');
    cloneRange(this.fs, this.writer, { root: srcRoot, ino: src.ino, offset: c.cloneOffset }, { root: this.root, ino: dst.ino, offset: c.fileOffset }, c.cloneLen);
  }

  truncate(c: T.TruncateCmd): void {
    // no flush here: the writer cuts gathered writes of this file to the new size (see FileWriter.truncate)
    checkFileRange('truncate', 0n, c.size);
    const f = this.file(c.path);
    this.writer.truncate(this.root, f.ino, c.size);
  }

  chmod(c: T.ChmodCmd): void {
    const ino = this.attrsOf(c.path);
    const cur = getInode(this.fs, this.root, ino)!;
    updateInode(this.fs, this.root, ino, { mode: (cur.mode & 0o170000) | (Number(c.mode) & 0o7777) });
  }

  chown(c: T.ChownCmd): void {
    if (c.uid > 0xffffffffn || c.gid > 0xffffffffn) throw new ReceiveError('bad-owner', `uid ${c.uid} / gid ${c.gid} do not fit 32 bits`);
    updateInode(this.fs, this.root, this.attrsOf(c.path), { uid: Number(c.uid), gid: Number(c.gid) });
  }

  utimes(c: T.UtimesCmd): void {
    // utimensat refuses such nanoseconds (EINVAL); stored, they show as garbage times
    for (const t of [c.atime, c.mtime, c.ctime, c.otime]) if (t && t.nsec > 999_999_999) throw new ReceiveError('bad-time', `a time with ${t.nsec} nanoseconds`);
    const patch: { atime: BtrfsTimespec; mtime: BtrfsTimespec; ctime: BtrfsTimespec; otime?: BtrfsTimespec } = {
      atime: ts(c.atime), mtime: ts(c.mtime), ctime: ts(c.ctime),
    };
    if (c.otime) patch.otime = ts(c.otime);
    updateInode(this.fs, this.root, this.attrsOf(c.path), patch);
  }

  /** Sent only by `btrfs send --no-data`; like btrfs receive, nothing to apply. */
  updateExtent(c: T.UpdateExtentCmd): void { this.file(c.path); }

  fallocate(c: T.FallocateCmd): void {
    checkFileRange('fallocate', c.fileOffset, c.size);
    this.writer.flush();
    const f = this.file(c.path);
    if (c.mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) throw new ReceiveError('fallocate-mode', `FALLOCATE mode 0x${c.mode.toString(16)} is not supported`);
    if (c.mode & FALLOC_FL_PUNCH_HOLE) this.writer.zeroRange(this.root, f.ino, c.fileOffset, c.fileOffset + c.size);
    else fallocate(this.fs, this.writer, this.root, f.ino, c.fileOffset, c.size, (c.mode & FALLOC_FL_KEEP_SIZE) !== 0);
  }

  /** btrfs-progs ignores FILEATTR; the flags are BTRFS_INODE_* bits, so they go straight to the inode. */
  fileattr(c: T.FileattrCmd): void { updateInode(this.fs, this.root, this.attrsOf(c.path), { flags: c.fileattr & 0xffffffffn }); }

  enableVerity(): void {
    throw new ReceiveError('verity-unsupported', 'fs-verity (ENABLE_VERITY) is not supported by btrfs-ts receive; the stream cannot be applied faithfully');
  }

  encodedWrite(c: T.EncodedWriteCmd): void {
    checkFileRange('encoded write', c.fileOffset, c.unencodedFileLen);
    const f = this.file(c.path);
    this.writer.flush();
    const d = planEncodedWrite(c, { sectorsize: this.fs.sectorsize, iSize: getInode(this.fs, this.root, f.ino)!.size, forceDecompress: this.opts.forceDecompress ?? false });
    const recompress = d.action === 'decompress' && this.opts.compress !== undefined;
    this.report.addEncoded({
      offset: c.meta?.offset ?? 0, path: escapePath(c.path), fileOffset: c.fileOffset, codec: codecName(d.diskType),
      encodedLen: c.data.length, fileLen: c.unencodedFileLen, action: recompress ? 'recompress' : d.action, reasons: d.reasons,
    });
    const uoff = Number(c.unencodedOffset);
    const flen = Number(c.unencodedFileLen);
    if (d.action === 'pass-through' && !this.opts.checkExtents) {
      this.writer.passThrough(this.root, f.ino, c.fileOffset, { data: c.data, type: d.diskType!, ramBytes: c.unencodedLen, uoff: c.unencodedOffset, fileLen: c.unencodedFileLen, inline: d.inline ?? false });
      return;
    }
    const plain = d.diskType === undefined
      ? c.data
      : decodeEncodedData(d.diskType, c.data, c.unencodedLen, uoff + flen, d.lzoSectorSize ?? this.fs.sectorsize);
    if (plain.length < uoff + flen) throw new ReceiveError('encoded-short', `encoded data holds ${plain.length} bytes, the write needs ${uoff + flen}`);
    if (d.action === 'pass-through') {
      this.writer.passThrough(this.root, f.ino, c.fileOffset, { data: c.data, type: d.diskType!, ramBytes: c.unencodedLen, uoff: c.unencodedOffset, fileLen: c.unencodedFileLen, inline: d.inline ?? false });
    } else {
      this.writer.write(this.root, f.ino, c.fileOffset, plain.subarray(uoff, uoff + flen));
    }
  }

  async end(): Promise<void> {
    await this.finishSubvol();
  }

  /** A stream that stops without END leaves a subvolume half done: it must never be committed. */
  get inProgress(): boolean {
    return this.cur !== undefined;
  }
}

function resolvePathParts(path: Uint8Array): Uint8Array {
  if (path.length === 0 || path.includes(0x2f) || path.includes(0) || (path.length <= 2 && path.every((b) => b === 0x2e))) {
    throw new ReceiveError('bad-subvol-name', `subvolume name ${escapePath(path)} is not a single path component`);
  }
  if (path.length > 255) throw new ReceiveError('name-too-long', 'subvolume name over 255 bytes');
  return path;
}

/** Stream RDEV is userspace dev_t (new_encode_dev); btrfs stores the kernel's MKDEV(major, minor). */
export function kernelDev(dev: bigint): bigint {
  const d = BigInt.asUintN(32, dev);
  const major = (d & 0xfff00n) >> 8n;
  const minor = (d & 0xffn) | ((d >> 12n) & 0xfff00n);
  return (major << 20n) | minor;
}

function ts(t: T.Timespec): BtrfsTimespec {
  return { sec: t.sec, nsec: t.nsec };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
