import { constants, promises as fsp } from 'node:fs';
import { ReceiveError } from '../errors.js';
import { timespecNs } from '../image/structs.js';
import type { Receiver } from '../stream/receiver.js';
import type * as T from '../stream/types.js';
import { checkSubvolName, formatUuid, showPath } from '../tools/paths.js';
import { encodedFileBytes } from '../tools/encoded.js';
import { isReservedName } from '../tools/received-index.js';
import { HelperError } from './syscall-helper.js';
import type { ExtractHooks, ExtractStats } from './types.js';
import { O_CREATE_NEW, O_READ_NOFOLLOW, O_WRITE_NOFOLLOW, SubvolPaths, cloneRange, emulateFallocate, fileRange, makeSpecial, writeAll } from './fs.js';

/** errnos of an xattr the directory's filesystem will not hold: a warning, the rest goes on (xattrFailed). */
const XATTR_NOT_HELD = new Set([1, 7, 13, 28, 34, 95]);

/**
 * Applies send commands to a plain directory tree the way `btrfs receive` applies them to a btrfs
 * subvolume: the same syscalls in the same order (create 0600/0700, then CHOWN/CHMOD/UTIMES), so the
 * result matches what the kernel receive produces, field for field, on any filesystem.
 */

interface Current {
  name: Uint8Array;
  uuid: Uint8Array;
  ctransid: bigint;
  parentUuid: Uint8Array | null;
  paths: SubvolPaths;
}

const S_IFMT = 0o170000;
const key = (p: Uint8Array): string => Buffer.from(p.buffer, p.byteOffset, p.length).toString('latin1');
const SLASH = Buffer.from('/');

export class ExtractReceiver implements Receiver {
  readonly stats: ExtractStats = { subvolumes: 0, commands: 0, dataBytes: 0, warnings: 0 };
  /** The command being applied, for error context. */
  current: T.SendCommand | undefined;
  private cur: Current | undefined;
  /** One open file for runs of WRITE/CLONE/TRUNCATE on the same path; closed on any namespace change. */
  private open: { key: string; fh: fsp.FileHandle } | undefined;
  private warnedOnce = new Set<string>();

  constructor(private readonly h: ExtractHooks) {}

  private warnOnce(kind: string, msg: string): void {
    if (this.warnedOnce.has(kind)) return;
    this.warnedOnce.add(kind);
    this.warn(msg);
  }

  private warn(msg: string): void {
    this.stats.warnings++;
    this.h.warn(msg);
  }

  private sub(c: T.SendCommand): Current {
    this.current = c;
    this.stats.commands++;
    if (!this.cur) throw new ReceiveError('EXTRACT_NO_SUBVOL', 'command before SUBVOL/SNAPSHOT');
    return this.cur;
  }

  private async closeOpen(): Promise<void> {
    const o = this.open;
    this.open = undefined;
    if (o) await o.fh.close();
  }

  private async fileFor(path: Uint8Array): Promise<fsp.FileHandle> {
    const k = key(path);
    if (this.open?.key === k) return this.open.fh;
    await this.closeOpen();
    const abs = await this.cur!.paths.resolve(path);
    const fh = await fsp.open(abs, O_WRITE_NOFOLLOW);
    this.open = { key: k, fh };
    return fh;
  }

  private async beginSubvol(c: T.SubvolCmd | T.SnapshotCmd, parentUuid: Uint8Array | null): Promise<Buffer> {
    this.current = c;
    this.stats.commands++;
    // `send -e` puts several subvolumes in one stream with no END between them: as btrfs receive does,
    // a new SUBVOL/SNAPSHOT finishes the previous subvolume
    await this.finishCurrent();
    const bad = checkSubvolName(c.path);
    if (bad) throw new ReceiveError('EXTRACT_UNSAFE_PATH', `refusing subvolume name ${showPath(c.path)}: ${bad.message}`);
    if (isReservedName(c.path)) throw new ReceiveError('EXTRACT_RESERVED_NAME', `subvolume name ${showPath(c.path)} is reserved for extract's own files`);
    const abs = Buffer.concat([this.h.root, SLASH, c.path]);
    const exists = await fsp.lstat(abs).then(() => true, () => false);
    if (exists) throw new ReceiveError('EXTRACT_EXISTS', `${showPath(c.path)} already exists in the target directory`);
    this.cur = { name: c.path, uuid: c.uuid, ctransid: c.ctransid, parentUuid, paths: new SubvolPaths(abs) };
    return abs;
  }

  async subvol(c: T.SubvolCmd): Promise<void> {
    const abs = await this.beginSubvol(c, null);
    await fsp.mkdir(abs, 0o755);
  }

  async snapshot(c: T.SnapshotCmd): Promise<void> {
    await this.beginSubvol(c, c.cloneUuid);
    const parent = this.h.index.findByUuid(c.cloneUuid);
    if (!parent) {
      this.cur = undefined;
      throw new ReceiveError('EXTRACT_NO_PARENT_SUBVOL', `cannot find the parent subvolume (uuid ${formatUuid(c.cloneUuid)}) among the subvolumes extracted into this directory; extract its stream first`);
    }
    await this.h.snapshot(parent, c.path);
  }

  async end(c: T.EndCmd): Promise<void> {
    this.current = c;
    this.stats.commands++;
    await this.finishCurrent();
  }

  private async finishCurrent(): Promise<void> {
    await this.closeOpen();
    const cur = this.cur;
    this.cur = undefined;
    if (!cur) return;
    this.stats.subvolumes++;
    await this.h.finished(cur.name, cur.uuid, cur.ctransid, cur.parentUuid);
  }

  async mkfile(c: T.CreateCmd): Promise<void> {
    const abs = await this.sub(c).paths.resolve(c.path);
    await (await fsp.open(abs, O_CREATE_NEW, 0o600)).close();
  }

  async mkdir(c: T.CreateCmd): Promise<void> {
    await fsp.mkdir(await this.sub(c).paths.resolve(c.path), 0o700);
  }

  private async special(c: T.CreateCmd, mode: number, dev: bigint): Promise<void> {
    const abs = await this.sub(c).paths.resolve(c.path);
    const why = await makeSpecial(this.h.helper, abs, mode, dev);
    if (why) this.warn(`${showPath(c.path)}: created as an empty regular file (${why})`);
  }

  mknod(c: T.CreateCmd): Promise<void> {
    // btrfs receive: mknod(path, mode & S_IFMT, rdev); permissions come with the CHMOD that follows
    return this.special(c, Number((c.mode ?? 0n) & BigInt(S_IFMT)), c.rdev ?? 0n);
  }

  mkfifo(c: T.CreateCmd): Promise<void> {
    return this.special(c, constants.S_IFIFO | 0o600, 0n);
  }

  mksock(c: T.CreateCmd): Promise<void> {
    return this.special(c, constants.S_IFSOCK | 0o600, 0n);
  }

  async symlink(c: T.SymlinkCmd): Promise<void> {
    const abs = await this.sub(c).paths.resolve(c.path);
    // the target is stored, never followed, so it may point anywhere (as on btrfs)
    await fsp.symlink(Buffer.from(c.pathLink), abs);
  }

  async rename(c: T.RenameCmd): Promise<void> {
    const s = this.sub(c);
    await this.closeOpen();
    await fsp.rename(await s.paths.resolve(c.path), await s.paths.resolve(c.pathTo));
  }

  async link(c: T.LinkCmd): Promise<void> {
    const s = this.sub(c);
    await this.closeOpen();
    await fsp.link(await s.paths.resolve(c.pathLink), await s.paths.resolve(c.path));
  }

  async unlink(c: T.UnlinkCmd): Promise<void> {
    const s = this.sub(c);
    await this.closeOpen();
    await fsp.unlink(await s.paths.resolve(c.path));
  }

  async rmdir(c: T.UnlinkCmd): Promise<void> {
    const s = this.sub(c);
    await this.closeOpen();
    await fsp.rmdir(await s.paths.resolve(c.path));
  }

  private async xattrTarget(c: T.SetXattrCmd | T.RemoveXattrCmd): Promise<Buffer | undefined> {
    const abs = await this.sub(c).paths.resolve(c.path, true);
    if (!this.h.xattrs) return undefined;
    if (!this.h.helper.available) {
      this.warnOnce('xattr', 'xattrs are not restored: python3 is not available');
      return undefined;
    }
    return abs;
  }

  private xattrFailed(c: T.SetXattrCmd | T.RemoveXattrCmd, e: unknown): void {
    // EPERM, EACCES (trusted.* as non-root, user.* on a symlink), EOPNOTSUPP (btrfs.* on another filesystem),
    // ENOSPC, E2BIG, ERANGE (no room for it there: ext4 keeps all of a file's xattrs in one block, where
    // btrfs holds each up to a leaf; a truly full disk stops the next write anyway)
    if (e instanceof HelperError && XATTR_NOT_HELD.has(e.errno)) {
      this.warn(`xattr ${showPath(c.name)} on ${showPath(c.path)} not applied: ${e.message}`);
      return;
    }
    throw e;
  }

  async setXattr(c: T.SetXattrCmd): Promise<void> {
    const abs = await this.xattrTarget(c);
    if (abs) await this.h.helper.setXattr(abs, c.name, c.data).catch((e: unknown) => this.xattrFailed(c, e));
  }

  async removeXattr(c: T.RemoveXattrCmd): Promise<void> {
    const abs = await this.xattrTarget(c);
    if (abs) await this.h.helper.removeXattr(abs, c.name).catch((e: unknown) => this.xattrFailed(c, e));
  }

  async write(c: T.WriteCmd): Promise<void> {
    this.sub(c);
    await writeAll(await this.fileFor(c.path), c.data, fileRange(c.fileOffset, BigInt(c.data.length)));
    this.stats.dataBytes += c.data.length;
  }

  async encodedWrite(c: T.EncodedWriteCmd): Promise<void> {
    this.sub(c);
    const off = fileRange(c.fileOffset, c.unencodedFileLen);
    const bytes = encodedFileBytes(c);
    await writeAll(await this.fileFor(c.path), bytes, off);
    this.stats.dataBytes += bytes.length;
  }

  async clone(c: T.CloneCmd): Promise<void> {
    const s = this.sub(c);
    let srcPaths = s.paths;
    if (Buffer.compare(c.cloneUuid, s.uuid) !== 0) {
      const name = this.h.index.findByUuid(c.cloneUuid);
      if (!name) throw new ReceiveError('EXTRACT_NO_CLONE_SOURCE', `clone source subvolume ${formatUuid(c.cloneUuid)} was not extracted into this directory`);
      srcPaths = new SubvolPaths(Buffer.concat([this.h.root, SLASH, name]));
    }
    const dst = await this.fileFor(c.path);
    const src = await fsp.open(await srcPaths.resolve(c.clonePath), O_READ_NOFOLLOW);
    try {
      this.stats.dataBytes += await cloneRange(src, c, dst);
    } finally {
      await src.close();
    }
  }

  async truncate(c: T.TruncateCmd): Promise<void> {
    this.sub(c);
    await (await this.fileFor(c.path)).truncate(fileRange(c.size, 0n));
  }

  async fallocate(c: T.FallocateCmd): Promise<void> {
    this.sub(c);
    await emulateFallocate(await this.fileFor(c.path), c.mode, c.fileOffset, c.size);
  }

  async chmod(c: T.ChmodCmd): Promise<void> {
    const abs = await this.sub(c).paths.resolve(c.path, true);
    // chmod(2) follows symlinks and Linux cannot chmod a symlink itself; the kernel never sends this
    if ((await fsp.lstat(abs)).isSymbolicLink()) {
      this.warn(`CHMOD of symlink ${showPath(c.path)} ignored`);
      return;
    }
    await fsp.chmod(abs, Number(c.mode) & 0o7777);
  }

  async chown(c: T.ChownCmd): Promise<void> {
    const abs = await this.sub(c).paths.resolve(c.path, true);
    if (!this.h.owners) {
      this.warnOnce('chown', 'owners are not restored (not running as root)');
      return;
    }
    await fsp.lchown(abs, Number(c.uid), Number(c.gid));
  }

  async utimes(c: T.UtimesCmd): Promise<void> {
    const abs = await this.sub(c).paths.resolve(c.path, true);
    if (this.h.helper.available) {
      await this.h.helper.utime(abs, timespecNs(c.atime), timespecNs(c.mtime));
    } else {
      this.warnOnce('utimes', 'times are set with microsecond precision (python3 not available)');
      const sec = (t: T.Timespec) => Number(t.sec) + t.nsec / 1e9;
      await fsp.lutimes(abs, sec(c.atime), sec(c.mtime));
    }
  }

  updateExtent(c: T.UpdateExtentCmd): void {
    // `send --no-data`: btrfs receive does nothing either
    this.sub(c);
  }

  fileattr(c: T.FileattrCmd): void {
    // ignored by btrfs-progs too (inode flags would need translating to FS_IOC_SETFLAGS flags)
    this.sub(c);
    this.warnOnce('fileattr', 'FILEATTR commands are ignored (as btrfs receive does)');
  }

  enableVerity(c: T.EnableVerityCmd): void {
    this.sub(c);
    this.warn(`ENABLE_VERITY on ${showPath(c.path)} ignored: fs-verity is not supported by extract`);
  }

  async close(): Promise<void> {
    await this.closeOpen();
  }
}
