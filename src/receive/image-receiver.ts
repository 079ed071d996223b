import type { BtrfsCompressType } from '../compress/index.js';
import { ReceiveError } from '../errors.js';
import { BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID } from '../image/structs/constants.js';
import type { BtrfsInodeItem } from '../image/structs/fs-items.js';
import { nowTimespec } from '../image/write/create.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { findDirEntry, getInode, removeXattr, setXattr, updateInode } from '../image/write/inode.js';
import { createSubvolume, setReceivedSubvol, setSubvolReadonly, updateRootItem } from '../image/write/subvol.js';
import { PlanReport } from '../plan/report.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../stream/constants.js';
import { dataSectorCrcs } from '../stream/command-crc.js';
import type { Receiver } from '../stream/receiver.js';
import { sameBytes } from '../util/bytes.js';
import type * as T from '../stream/types.js';
import { escapePath } from '../dump/escape.js';
import { cloneRange } from './clone.js';
import { FileWriter } from './file-write.js';
import { kernelDev, resolveExisting, S_IFDIR, S_IFIFO, S_IFREG, S_IFSOCK } from './namespace.js';
import { type Created, createSymlink, createUnlinked, linkCreated, linkNode, placeCreated, removeNode, renameNode } from './names.js';
import { findSubvolByUuid, missingParent, snapshotSubvolume } from './snapshot.js';
import { fallocate } from './fallocate.js';
import { checkFileRange, checkXattrName, checkXattrValue } from './limits.js';
import { applyEncodedWrite } from './encoded.js';
import { subvolumeName } from './paths.js';
import { checkDirBeforeChange } from './size-checks.js';
import { chownPatch, mknodMode, utimesPatch } from './attr-patches.js';

export interface ImageReceiverOptions {
  /** Directory the subvolumes are created in (default: the top level, subvolume 5, directory 256); `path` names it in errors. */
  dest?: { root: bigint; dir: bigint; path?: string };
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
  private readonly dest: { root: bigint; dir: bigint; path?: string };
  readonly received: ReceivedSubvol[] = [];

  constructor(private readonly fs: Filesystem, private readonly opts: ImageReceiverOptions = {}) {
    this.writer = new FileWriter(fs, opts.compress ? { compress: opts.compress } : {});
    this.dest = opts.dest ?? { root: BTRFS_FS_TREE_OBJECTID, dir: BTRFS_FIRST_FREE_OBJECTID };
  }

  private get root(): bigint {
    if (!this.cur) throw new ReceiveError('NO_SUBVOLUME', 'command before any SUBVOL or SNAPSHOT');
    return this.cur.rootid;
  }

  /** Everything not yet in the model (a pending name, gathered writes) goes in; called before commits and reads. */
  flush(): void {
    this.settle();
    this.writer.flush();
  }

  /**
   * An inode just created whose name is not written yet: the next command is nearly always the RENAME
   * of it to its place (placeCreated); any other command, and flush, links it first (settle).
   */
  private pending: Created | undefined;

  private settle(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    linkCreated(this.fs, this.root, p);
  }

  /** A command that may change what paths name: the pending name goes in, the last resolved path is forgotten. */
  private beforeNamespaceChange(): void {
    this.settle();
    this.lastPath = undefined;
  }

  /** An inode that loses its last name takes its gathered writes with it. */
  private readonly forget = (ino: bigint): void => this.writer.discardFile(this.root, ino);

  private async finishSubvol(): Promise<void> {
    this.beforeNamespaceChange();
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
    const parts = subvolumeName(path);
    if (findDirEntry(this.fs, this.dest.root, this.dest.dir, parts)) {
      throw new ReceiveError('SUBVOLUME_EXISTS', `a file or subvolume named ${escapePath(parts)} already exists where the subvolume would be created`);
    }
    checkDirBeforeChange(this.fs, this.dest.root, this.dest.dir, `${this.dest.path ?? 'the top level'}, where the subvolume is created`);
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

  private create(path: Uint8Array, mode: number, rdev = 0n): void {
    this.beforeNamespaceChange();
    this.pending = createUnlinked(this.fs, this.root, path, mode, rdev);
  }

  mkfile(c: T.CreateCmd): void { this.create(c.path, S_IFREG | 0o600); }
  mkdir(c: T.CreateCmd): void { this.create(c.path, S_IFDIR | 0o700); }
  mknod(c: T.CreateCmd): void {
    this.create(c.path, mknodMode(c), kernelDev(c.rdev ?? 0n));
  }
  mkfifo(c: T.CreateCmd): void { this.create(c.path, S_IFIFO | 0o600); }
  mksock(c: T.CreateCmd): void { this.create(c.path, S_IFSOCK | 0o600); }
  symlink(c: T.SymlinkCmd): void {
    this.beforeNamespaceChange();
    createSymlink(this.fs, this.root, c.path, c.pathLink);
  }

  rename(c: T.RenameCmd): void {
    this.lastPath = undefined;
    const p = this.pending;
    if (p && sameBytes(p.path, c.path) && placeCreated(this.fs, this.root, p, c.pathTo)) {
      this.pending = undefined;
      return;
    }
    this.settle();
    renameNode(this.fs, this.root, c.path, c.pathTo, this.forget);
  }

  link(c: T.LinkCmd): void {
    this.beforeNamespaceChange();
    linkNode(this.fs, this.root, c.path, c.pathLink);
  }

  unlink(c: T.UnlinkCmd): void {
    this.beforeNamespaceChange();
    removeNode(this.fs, this.root, c.path, 'unlink', this.forget);
  }

  rmdir(c: T.UnlinkCmd): void {
    this.beforeNamespaceChange();
    removeNode(this.fs, this.root, c.path, 'rmdir', this.forget);
  }

  /**
   * The last path file/attrsOf resolved, until a namespace command (or a new subvolume) may have changed
   * what it names: a stream names the same file in each command on it (write, chown, chmod, utimes).
   */
  private lastPath: { root: bigint; path: Uint8Array; ino: bigint } | undefined;

  /** Every command on a path comes here first: a pending name is linked before it is looked for. */
  private existing(path: Uint8Array, what: string): { ino: bigint; inode: BtrfsInodeItem } {
    this.settle();
    const root = this.root;
    const l = this.lastPath;
    if (l && l.root === root && sameBytes(l.path, path)) {
      const inode = getInode(this.fs, root, l.ino);
      if (inode) return { ino: l.ino, inode };
    }
    const r = resolveExisting(this.fs, root, path, what);
    this.lastPath = { root, path: path.slice(), ino: r.ino };
    return r;
  }

  private file(path: Uint8Array, what = 'path'): { ino: bigint; size: bigint } {
    const r = this.existing(path, what);
    if ((r.inode.mode & 0o170000) !== S_IFREG) throw new ReceiveError('NOT_A_FILE', `${what} is not a regular file`);
    return { ino: r.ino, size: r.inode.size };
  }

  /** Attribute commands need no flush: gathered writes change only extents and the size. */
  private attrsOf(path: Uint8Array): bigint {
    return this.existing(path, 'path').ino;
  }

  setXattr(c: T.SetXattrCmd): void {
    checkXattrName(c.name);
    checkXattrValue(c.name, c.data);
    setXattr(this.fs, this.root, this.attrsOf(c.path), c.name, c.data);
  }
  removeXattr(c: T.RemoveXattrCmd): void {
    if (!removeXattr(this.fs, this.root, this.attrsOf(c.path), c.name)) throw new ReceiveError('NO_XATTR', `no xattr ${escapePath(c.name)} to remove`);
  }

  write(c: T.WriteCmd): void {
    checkFileRange('write', c.fileOffset, BigInt(c.data.length));
    const f = this.file(c.path);
    this.writer.write(this.root, f.ino, c.fileOffset, c.data, dataSectorCrcs(c));
    this.report.addPlainWrite(c.data.length);
  }

  clone(c: T.CloneCmd): void {
    checkFileRange('clone destination', c.fileOffset, c.cloneLen);
    checkFileRange('clone source', c.cloneOffset, c.cloneLen);
    const dst = this.file(c.path, 'clone destination');
    const cur = this.cur!;
    const srcRoot = sameBytes(c.cloneUuid, cur.uuid) ? cur.rootid : findSubvolByUuid(this.fs, c.cloneUuid);
    if (srcRoot === undefined) throw missingParent(c.cloneUuid, 'clone source subvolume');
    const src = resolveExisting(this.fs, srcRoot, c.clonePath, 'clone source');
    if ((src.inode.mode & 0o170000) !== S_IFREG) throw new ReceiveError('NOT_A_FILE', 'clone source is not a regular file');
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

  chown(c: T.ChownCmd): void { updateInode(this.fs, this.root, this.attrsOf(c.path), chownPatch(c)); }
  utimes(c: T.UtimesCmd): void { updateInode(this.fs, this.root, this.attrsOf(c.path), utimesPatch(c)); }

  /** Sent only by `btrfs send --no-data`; like btrfs receive, nothing to apply. */
  updateExtent(c: T.UpdateExtentCmd): void { this.file(c.path); }

  fallocate(c: T.FallocateCmd): void {
    checkFileRange('fallocate', c.fileOffset, c.size);
    const f = this.file(c.path);
    this.writer.flushFile(this.root, f.ino);
    if (c.mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) throw new ReceiveError('FALLOCATE_MODE', `FALLOCATE mode 0x${c.mode.toString(16)} is not supported`);
    if (c.mode & FALLOC_FL_PUNCH_HOLE) this.writer.zeroRange(this.root, f.ino, c.fileOffset, c.fileOffset + c.size);
    else fallocate(this.fs, this.writer, this.root, f.ino, c.fileOffset, c.size, (c.mode & FALLOC_FL_KEEP_SIZE) !== 0);
  }

  /** btrfs-progs ignores FILEATTR; the flags are BTRFS_INODE_* bits, so they go straight to the inode. */
  fileattr(c: T.FileattrCmd): void { updateInode(this.fs, this.root, this.attrsOf(c.path), { flags: c.fileattr & 0xffffffffn }); }

  enableVerity(): void {
    this.settle();
    throw new ReceiveError('VERITY_UNSUPPORTED', 'fs-verity (ENABLE_VERITY) is not supported by btrfs-ts receive; the stream cannot be applied faithfully');
  }

  encodedWrite(c: T.EncodedWriteCmd): void {
    checkFileRange('encoded write', c.fileOffset, c.unencodedFileLen);
    const f = this.file(c.path);
    applyEncodedWrite({ fs: this.fs, writer: this.writer, report: this.report, root: this.root, ino: f.ino, opts: this.opts }, c);
  }

  async end(): Promise<void> {
    await this.finishSubvol();
  }

  /** A stream that stops without END leaves a subvolume half done: it must never be committed. */
  get inProgress(): boolean {
    return this.cur !== undefined;
  }
}
