import { StreamError } from '../errors.js';
import { sendCommandName } from '../stream/constants.js';
import type { Receiver } from '../stream/receiver.js';
import type * as T from '../stream/types.js';
import { formatUuid } from '../util/uuid.js';
import { escapeBinary } from './escape.js';
import { formatDumpTime } from './time.js';

/** btrfs-progs builds paths in PATH_MAX buffers and refuses longer ones. */
const PATH_MAX = 4096;
/** Formatted times kept (then forgotten all at once): the memory stays small whatever the stream. */
const TIME_CACHE = 1024;

/**
 * Prints commands as btrfs-progs v6.2 `btrfs receive --dump` does (cmds/receive-dump.c). Output lines are
 * "binary strings" (one char per byte, latin1) because progs prints xattr names and clone sources raw.
 */
export class DumpReceiver implements Receiver {
  /** `./NAME` of the current subvolume; progs starts with "." and never resets it between streams. */
  private subvolPath = '.';
  /**
   * Times already formatted: a file's mtime and ctime, and files written together, share their seconds,
   * and each formatting asks the zone for its offset (a Date and BigInt arithmetic, ~2% of a dump).
   */
  private times = new Map<bigint, string | undefined>();

  constructor(private readonly out: (line: string) => void) {}

  /** `./NAME` of the current subvolume (a binary string): the start of every path printed. */
  get subvolume(): string {
    return this.subvolPath;
  }

  private line(title: string, path: string, fields?: string, tail?: string): void {
    const escaped = escapeBinary(path);
    let s = title.padEnd(16) + escaped;
    if (fields === undefined) {
      this.out(s + '\n');
      return;
    }
    s += ' '.repeat(Math.max(1, 32 - escaped.length));
    this.out(s + fields + (tail ?? '') + '\n');
  }

  /** path_cat_out: one trailing slash dropped from each side, joined by "/", PATH_MAX enforced. */
  private cat(c: T.SendCommand, p1: string, p2: string): string {
    if (p1.length + p2.length + 2 >= PATH_MAX) {
      throw new StreamError('PATH_TOO_LONG', `path invalid: ${p2.slice(0, 64)}... is longer than PATH_MAX`, ctxOf(c));
    }
    const a = p1.endsWith('/') ? p1.slice(0, -1) : p1;
    const b = p2.endsWith('/') ? p2.slice(0, -1) : p2;
    return `${a}/${b}`;
  }

  private full(c: T.SendCommand & { path: Uint8Array }): string {
    return this.cat(c, this.subvolPath, cstr(c.path));
  }

  private simple(c: T.SendCommand & { path: Uint8Array }, title: string, fields?: string): void {
    this.line(title, this.full(c), fields);
  }

  subvol(c: T.SubvolCmd): void {
    this.subvolPath = this.cat(c, '.', cstr(c.path));
    this.line('subvol', this.subvolPath, `uuid=${formatUuid(c.uuid)} transid=${c.ctransid}`);
  }

  snapshot(c: T.SnapshotCmd): void {
    this.subvolPath = this.cat(c, '.', cstr(c.path));
    this.line('snapshot', this.subvolPath,
      `uuid=${formatUuid(c.uuid)} transid=${c.ctransid} parent_uuid=${formatUuid(c.cloneUuid)} parent_transid=${c.cloneCtransid}`);
  }

  mkfile(c: T.CreateCmd): void { this.simple(c, 'mkfile'); }
  mkdir(c: T.CreateCmd): void { this.simple(c, 'mkdir'); }
  mkfifo(c: T.CreateCmd): void { this.simple(c, 'mkfifo'); }
  mksock(c: T.CreateCmd): void { this.simple(c, 'mksock'); }
  mknod(c: T.CreateCmd): void {
    this.simple(c, 'mknod', `mode=${(c.mode ?? 0n).toString(8)} dev=0x${(c.rdev ?? 0n).toString(16)}`);
  }
  symlink(c: T.SymlinkCmd): void {
    this.line('symlink', this.full(c), 'dest=', escapeBinary(cstr(c.pathLink)));
  }
  rename(c: T.RenameCmd): void {
    const to = this.cat(c, this.subvolPath, cstr(c.pathTo));
    this.line('rename', this.full(c), 'dest=', escapeBinary(to));
  }
  link(c: T.LinkCmd): void {
    this.line('link', this.full(c), 'dest=', escapeBinary(cstr(c.pathLink)));
  }
  unlink(c: T.UnlinkCmd): void { this.simple(c, 'unlink'); }
  rmdir(c: T.UnlinkCmd): void { this.simple(c, 'rmdir'); }
  write(c: T.WriteCmd): void { this.simple(c, 'write', `offset=${c.fileOffset} len=${c.data.length}`); }
  clone(c: T.CloneCmd): void {
    // progs prints the clone source with %s: unescaped, relative to the *current* subvolume
    const from = this.cat(c, this.subvolPath, cstr(c.clonePath));
    this.simple(c, 'clone', `offset=${c.fileOffset} len=${c.cloneLen} from=${from} clone_offset=${c.cloneOffset}`);
  }
  setXattr(c: T.SetXattrCmd): void {
    // "%.*s" stops at a NUL inside the value; len= still reports the full length
    const data = cstr(c.data);
    this.simple(c, 'set_xattr', `name=${cstr(c.name)} data=${data} len=${c.data.length}`);
  }
  removeXattr(c: T.RemoveXattrCmd): void { this.simple(c, 'remove_xattr', `name=${cstr(c.name)}`); }
  truncate(c: T.TruncateCmd): void { this.simple(c, 'truncate', `size=${c.size}`); }
  chmod(c: T.ChmodCmd): void { this.simple(c, 'chmod', `mode=${c.mode.toString(8)}`); }
  chown(c: T.ChownCmd): void { this.simple(c, 'chown', `gid=${c.gid} uid=${c.uid}`); }
  utimes(c: T.UtimesCmd): void {
    const t = (x: T.Timespec) => {
      const s = this.time(x.sec);
      if (s === undefined) throw new StreamError('BAD_TIME', `failed to convert time ${x.sec}.${x.nsec} to local time`, ctxOf(c));
      return s;
    };
    this.simple(c, 'utimes', `atime=${t(c.atime)} mtime=${t(c.mtime)} ctime=${t(c.ctime)}`);
  }
  updateExtent(c: T.UpdateExtentCmd): void { this.simple(c, 'update_extent', `offset=${c.fileOffset} len=${c.size}`); }
  encodedWrite(c: T.EncodedWriteCmd): void {
    this.simple(c, 'encoded_write',
      `offset=${c.fileOffset} len=${c.data.length}, unencoded_file_len=${c.unencodedFileLen}, ` +
      `unencoded_len=${c.unencodedLen}, unencoded_offset=${c.unencodedOffset}, ` +
      `compression=${c.compression ?? 0}, encryption=${c.encryption ?? 0}`);
  }
  fallocate(c: T.FallocateCmd): void {
    this.simple(c, 'fallocate', `mode=${c.mode | 0} offset=${c.fileOffset} len=${c.size}`);
  }
  // progs prints the decimal value after "0x" (a long-standing quirk reproduced on purpose)
  fileattr(c: T.FileattrCmd): void { this.simple(c, 'fileattr', `fileattr=0x${c.fileattr}`); }
  enableVerity(c: T.EnableVerityCmd): void {
    this.simple(c, 'enable_verity',
      `algorithm=${c.algorithm} block_size=${c.blockSize} salt_len=${c.salt.length} sig_len=${c.sig.length}`);
  }
  end(): void {}

  private time(sec: bigint): string | undefined {
    let s = this.times.get(sec);
    if (s === undefined && !this.times.has(sec)) {
      if (this.times.size >= TIME_CACHE) this.times.clear();
      s = formatDumpTime(sec);
      this.times.set(sec, s);
    }
    return s;
  }
  /** progs skips unknown commands silently; we say that we skipped one. */
  unknown(c: T.UnknownCmd): void {
    this.out(`${'unknown'.padEnd(16)}cmd=${c.cmd} len=${c.payload.length}\n`);
  }
}

function ctxOf(c: T.SendCommand) {
  return c.meta ? { offset: c.meta.offset, commandIndex: c.meta.index, command: sendCommandName(c.cmd) } : { command: sendCommandName(c.cmd) };
}

/** C strings end at the first NUL; returned as a binary string (one char per byte). */
export function cstr(b: Uint8Array): string {
  const z = b.indexOf(0);
  return bytesToBin(z < 0 ? b : b.subarray(0, z));
}

export function bytesToBin(b: Uint8Array): string {
  // latin1 maps each byte to the char of the same code, in native code; the Buffer method takes any
  // Uint8Array as `this`, which saves making a Buffer around each path (a third of the cost)
  return latin1Slice.call(b, 0, b.length);
}

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;
