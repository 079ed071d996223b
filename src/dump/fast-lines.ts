import type { AttrTable } from '../stream/attrs.js';
import * as C from '../stream/constants.js';
import { ascii, escapeInto, LineBuffer } from './line-buffer.js';
import { formatDumpTime } from './time.js';

/** btrfs-progs builds paths in PATH_MAX buffers and refuses longer ones (DumpReceiver.cat). */
const PATH_MAX = 4096;
const TIME_CACHE = 1024;
const TWO32 = 0x100000000;

const EMPTY = new Uint8Array(0);
/** Each command's title as DumpReceiver.line pads it to 16 columns. */
const TITLES: Uint8Array[] = [];
for (const [cmd, title] of [
  [C.BTRFS_SEND_C_MKFILE, 'mkfile'], [C.BTRFS_SEND_C_MKDIR, 'mkdir'], [C.BTRFS_SEND_C_MKFIFO, 'mkfifo'],
  [C.BTRFS_SEND_C_MKSOCK, 'mksock'], [C.BTRFS_SEND_C_SYMLINK, 'symlink'], [C.BTRFS_SEND_C_RENAME, 'rename'],
  [C.BTRFS_SEND_C_LINK, 'link'], [C.BTRFS_SEND_C_UNLINK, 'unlink'], [C.BTRFS_SEND_C_RMDIR, 'rmdir'],
  [C.BTRFS_SEND_C_SET_XATTR, 'set_xattr'], [C.BTRFS_SEND_C_REMOVE_XATTR, 'remove_xattr'], [C.BTRFS_SEND_C_WRITE, 'write'],
  [C.BTRFS_SEND_C_TRUNCATE, 'truncate'], [C.BTRFS_SEND_C_CHMOD, 'chmod'], [C.BTRFS_SEND_C_CHOWN, 'chown'],
  [C.BTRFS_SEND_C_UTIMES, 'utimes'], [C.BTRFS_SEND_C_UPDATE_EXTENT, 'update_extent'],
  [C.BTRFS_SEND_C_FALLOCATE, 'fallocate'], [C.BTRFS_SEND_C_FILEATTR, 'fileattr'],
  [C.BTRFS_SEND_C_ENCODED_WRITE, 'encoded_write'],
] as const) TITLES[cmd] = ascii(title.padEnd(16));

/**
 * The ids as module constants: read through the `C` namespace, each `case` of the switch below was a
 * property load until its function was optimized.
 */
const {
  BTRFS_SEND_A_PATH: PATH, BTRFS_SEND_A_INO: INO, BTRFS_SEND_A_MODE: MODE, BTRFS_SEND_A_RDEV: RDEV,
  BTRFS_SEND_A_FILE_OFFSET: FILE_OFFSET, BTRFS_SEND_A_SIZE: SIZE, BTRFS_SEND_A_DATA: DATA,
  BTRFS_SEND_A_ATIME: A_ATIME, BTRFS_SEND_A_COMPRESSION: A_COMPRESSION, BTRFS_SEND_A_CTIME: A_CTIME,
  BTRFS_SEND_A_ENCRYPTION: A_ENCRYPTION, BTRFS_SEND_A_FALLOCATE_MODE: A_FALLOCATE_MODE,
  BTRFS_SEND_A_FILEATTR: A_FILEATTR, BTRFS_SEND_A_GID: A_GID, BTRFS_SEND_A_MTIME: A_MTIME,
  BTRFS_SEND_A_OTIME: A_OTIME, BTRFS_SEND_A_PATH_LINK: A_PATH_LINK, BTRFS_SEND_A_PATH_TO: A_PATH_TO,
  BTRFS_SEND_A_UID: A_UID, BTRFS_SEND_A_UNENCODED_FILE_LEN: A_UNENCODED_FILE_LEN,
  BTRFS_SEND_A_UNENCODED_LEN: A_UNENCODED_LEN, BTRFS_SEND_A_UNENCODED_OFFSET: A_UNENCODED_OFFSET,
  BTRFS_SEND_A_XATTR_DATA: A_XATTR_DATA, BTRFS_SEND_A_XATTR_NAME: A_XATTR_NAME, BTRFS_SEND_C_CHMOD: CHMOD,
  BTRFS_SEND_C_CHOWN: CHOWN, BTRFS_SEND_C_ENCODED_WRITE: ENCODED_WRITE, BTRFS_SEND_C_FALLOCATE: FALLOCATE,
  BTRFS_SEND_C_FILEATTR: FILEATTR, BTRFS_SEND_C_LINK: LINK, BTRFS_SEND_C_MKDIR: MKDIR, BTRFS_SEND_C_MKFIFO: MKFIFO,
  BTRFS_SEND_C_MKFILE: MKFILE, BTRFS_SEND_C_MKSOCK: MKSOCK, BTRFS_SEND_C_REMOVE_XATTR: REMOVE_XATTR,
  BTRFS_SEND_C_RENAME: RENAME, BTRFS_SEND_C_RMDIR: RMDIR, BTRFS_SEND_C_SET_XATTR: SET_XATTR,
  BTRFS_SEND_C_SYMLINK: SYMLINK, BTRFS_SEND_C_TRUNCATE: TRUNCATE, BTRFS_SEND_C_UNLINK: UNLINK,
  BTRFS_SEND_C_UPDATE_EXTENT: UPDATE_EXTENT, BTRFS_SEND_C_UTIMES: UTIMES, BTRFS_SEND_C_WRITE: WRITE,
} = C;

/**
 * The dump lines of the common commands, written as bytes straight from a verified command's attributes:
 * no command object, no BigInt, no string per line (a dump of 15k commands spent ~9 µs a command on
 * those). It prints what DumpReceiver prints and accepts only what decodeCommand and DumpReceiver accept
 * without an error: anything else (a missing or odd-sized attribute, a path over PATH_MAX, a value past
 * 2^53, a time localtime cannot convert, a rare command) is left to them, so errors stay theirs.
 */
export class DumpLines extends LineBuffer {
  private p: Uint8Array = this.buf;
  private a!: AttrTable;
  /** The current subvolume as DumpReceiver has it, and the escaped "subvol/" every path starts with. */
  private subvolSeen: string | undefined;
  private subvolLen = 0;
  private prefix: Uint8Array = EMPTY;
  private readonly times = new Map<number, Uint8Array>();

  /** Appends the command's line; false, with nothing written, when it must go through DumpReceiver. */
  format(cmd: number, payload: Uint8Array, attrs: AttrTable, subvol: string): boolean {
    const title = TITLES[cmd];
    if (title === undefined) return false;
    if (subvol !== this.subvolSeen) this.setSubvol(subvol);
    this.p = payload;
    this.a = attrs;
    const start = this.pos;
    if (this.line(cmd, title)) return true;
    this.pos = start;
    return false;
  }

  private line(cmd: number, title: Uint8Array): boolean {
    const a = this.a;
    if (a.offsetOf(PATH) < 0) return false;
    switch (cmd) {
      case MKFILE: case MKDIR: case MKFIFO: case MKSOCK:
        if (this.sized(INO, 8) < 0 || this.optSized(MODE, 8) || this.optSized(RDEV, 8)) return false;
        return this.path(title, PATH) >= 0 && this.end();
      case UNLINK: case RMDIR:
        return this.path(title, PATH) >= 0 && this.end();
      case SYMLINK: case LINK:
        if (cmd === SYMLINK && this.sized(INO, 8) < 0) return false;
        if (a.offsetOf(A_PATH_LINK) < 0 || !this.field(title, PATH, 'dest=')) return false;
        this.escaped(A_PATH_LINK, false);
        return this.end();
      case RENAME: {
        const to = A_PATH_TO;
        // progs joins the destination first: its PATH_MAX error comes first
        if (a.offsetOf(to) < 0 || this.subvolLen + this.cstrLen(to) + 2 >= PATH_MAX || !this.field(title, PATH, 'dest=')) return false;
        this.escaped(to, true);
        return this.end();
      }
      case SET_XATTR: {
        const name = A_XATTR_NAME, data = A_XATTR_DATA;
        if (a.offsetOf(name) < 0 || a.offsetOf(data) < 0 || !this.field(title, PATH, 'name=')) return false;
        // "%s" and "%.*s": raw bytes up to a NUL; len= is the whole value's
        this.raw(name);
        this.text(' data=');
        this.raw(data);
        this.text(' len=');
        this.num(a.lengthOf(data));
        return this.end();
      }
      case REMOVE_XATTR:
        if (a.offsetOf(A_XATTR_NAME) < 0 || !this.field(title, PATH, 'name=')) return false;
        this.raw(A_XATTR_NAME);
        return this.end();
      case WRITE: {
        const off = this.u64(FILE_OFFSET);
        if (off < 0 || a.offsetOf(DATA) < 0 || !this.field(title, PATH, 'offset=')) return false;
        this.num(off);
        this.text(' len=');
        this.num(a.lengthOf(DATA));
        return this.end();
      }
      case TRUNCATE: {
        const size = this.u64(SIZE);
        return size >= 0 && this.field(title, PATH, 'size=') && this.num(size) && this.end();
      }
      case CHMOD: {
        const mode = this.u64(MODE);
        return mode >= 0 && this.field(title, PATH, 'mode=') && this.octal(mode) && this.end();
      }
      case CHOWN: {
        const uid = this.u64(A_UID), gid = this.u64(A_GID);
        if (uid < 0 || gid < 0 || !this.field(title, PATH, 'gid=')) return false;
        this.num(gid);
        this.text(' uid=');
        return this.num(uid) && this.end();
      }
      case UTIMES: {
        const at = this.time(A_ATIME), mt = this.time(A_MTIME), ct = this.time(A_CTIME);
        if (at === undefined || mt === undefined || ct === undefined || this.optSized(A_OTIME, 12)) return false;
        if (!this.field(title, PATH, 'atime=')) return false;
        this.bytes(at);
        this.text(' mtime=');
        this.bytes(mt);
        this.text(' ctime=');
        this.bytes(ct);
        return this.end();
      }
      case UPDATE_EXTENT: {
        const off = this.u64(FILE_OFFSET), size = this.u64(SIZE);
        if (off < 0 || size < 0 || !this.field(title, PATH, 'offset=')) return false;
        this.num(off);
        this.text(' len=');
        return this.num(size) && this.end();
      }
      case FALLOCATE: {
        const m = this.sized(A_FALLOCATE_MODE, 4), off = this.u64(FILE_OFFSET), size = this.u64(SIZE);
        if (m < 0 || off < 0 || size < 0 || !this.field(title, PATH, 'mode=')) return false;
        // printed as an int ("%d")
        this.num(this.p[m]! | (this.p[m + 1]! << 8) | (this.p[m + 2]! << 16) | (this.p[m + 3]! << 24));
        this.text(' offset=');
        this.num(off);
        this.text(' len=');
        return this.num(size) && this.end();
      }
      case FILEATTR: {
        // progs prints the decimal value after "0x"
        const v = this.u64(A_FILEATTR);
        return v >= 0 && this.field(title, PATH, 'fileattr=0x') && this.num(v) && this.end();
      }
      case ENCODED_WRITE:
        return this.encodedWrite(title);
      default:
        return false;
    }
  }

  private encodedWrite(title: Uint8Array): boolean {
    const off = this.u64(FILE_OFFSET), fileLen = this.u64(A_UNENCODED_FILE_LEN);
    const len = this.u64(A_UNENCODED_LEN), uoff = this.u64(A_UNENCODED_OFFSET);
    const comp = A_COMPRESSION, enc = A_ENCRYPTION;
    if (off < 0 || fileLen < 0 || len < 0 || uoff < 0 || this.optSized(comp, 4) || this.optSized(enc, 4)) return false;
    if (this.a.offsetOf(DATA) < 0 || !this.field(title, PATH, 'offset=')) return false;
    this.num(off);
    this.text(' len=');
    this.num(this.a.lengthOf(DATA));
    this.text(', unencoded_file_len=');
    this.num(fileLen);
    this.text(', unencoded_len=');
    this.num(len);
    this.text(', unencoded_offset=');
    this.num(uoff);
    this.text(', compression=');
    this.num(this.u32Or0(comp));
    this.text(', encryption=');
    this.num(this.u32Or0(enc));
    return this.end();
  }

  /** Title, path, the padding to column 48 and `label`: the start of every line with fields. */
  private field(title: Uint8Array, type: number, label: string): boolean {
    const n = this.path(title, type);
    if (n < 0) return false;
    this.room(64 + label.length);
    for (let i = n < 32 ? 32 - n : 1; i > 0; i--) this.buf[this.pos++] = 0x20;
    this.text(label);
    return true;
  }

  /** Title and "subvol/path" escaped; its escaped length, or -1 where DumpReceiver.cat would throw. */
  private path(title: Uint8Array, type: number): number {
    if (this.subvolLen + this.cstrLen(type) + 2 >= PATH_MAX) return -1;
    this.room(16);
    this.buf.set(title, this.pos);
    this.pos += 16;
    return this.escaped(type, true);
  }

  /** A C string attribute, escaped, after the subvolume's prefix or not; one trailing slash dropped with it. */
  private escaped(type: number, withSubvol: boolean): number {
    const s = this.a.offsetOf(type);
    let e = s + this.cstrLen(type);
    if (withSubvol && e > s && this.p[e - 1] === 0x2f) e--;
    const prefix = withSubvol ? this.prefix : EMPTY;
    this.room(prefix.length + 4 * (e - s));
    const from = this.pos;
    this.buf.set(prefix, from);
    this.pos = escapeInto(this.p, s, e, this.buf, from + prefix.length);
    return this.pos - from;
  }

  /** Length of a present attribute up to its first NUL. */
  private cstrLen(type: number): number {
    const s = this.a.offsetOf(type), n = this.a.lengthOf(type), p = this.p;
    for (let i = 0; i < n; i++) if (p[s + i] === 0) return i;
    return n;
  }

  /** A C string attribute as its raw bytes. */
  private raw(type: number): void {
    const s = this.a.offsetOf(type), n = this.cstrLen(type);
    this.room(n);
    this.buf.set(this.p.subarray(s, s + n), this.pos);
    this.pos += n;
  }

  private setSubvol(subvol: string): void {
    // "a/" where a is the subvolume with one trailing slash dropped, escaped as part of every path
    const a = ascii((subvol.endsWith('/') ? subvol.slice(0, -1) : subvol) + '/');
    const out = new Uint8Array(4 * a.length);
    this.prefix = out.slice(0, escapeInto(a, 0, a.length, out, 0));
    this.subvolLen = subvol.length;
    this.subvolSeen = subvol;
  }

  /** Where a value of exactly `size` bytes starts, -1 when absent or of another size. */
  private sized(type: number, size: number): number {
    const s = this.a.offsetOf(type);
    return s >= 0 && this.a.lengthOf(type) === size ? s : -1;
  }

  /** An optional value is there with the wrong size (decodeCommand refuses it). */
  private optSized(type: number, size: number): boolean {
    return this.a.offsetOf(type) >= 0 && this.a.lengthOf(type) !== size;
  }

  /** A u64 value as a number; -1 when absent, of the wrong size or past 2^53 (those go the slow way). */
  private u64(type: number): number {
    const s = this.sized(type, 8);
    if (s < 0) return -1;
    const p = this.p;
    const hi = (p[s + 4]! | (p[s + 5]! << 8) | (p[s + 6]! << 16) | (p[s + 7]! << 24)) >>> 0;
    if (hi >= 0x200000) return -1;
    return hi * TWO32 + ((p[s]! | (p[s + 1]! << 8) | (p[s + 2]! << 16) | (p[s + 3]! << 24)) >>> 0);
  }

  private u32Or0(type: number): number {
    const s = this.a.offsetOf(type);
    if (s < 0) return 0;
    const p = this.p;
    return (p[s]! | (p[s + 1]! << 8) | (p[s + 2]! << 16) | (p[s + 3]! << 24)) >>> 0;
  }

  /** A timespec's seconds formatted as progs does (cached), or undefined to go the slow way. */
  private time(type: number): Uint8Array | undefined {
    const s = this.sized(type, 12);
    if (s < 0) return undefined;
    const p = this.p;
    const hi = p[s + 4]! | (p[s + 5]! << 8) | (p[s + 6]! << 16) | (p[s + 7]! << 24);
    if (hi >= 0x200000 || hi < -0x200000) return undefined;
    const sec = hi * TWO32 + ((p[s]! | (p[s + 1]! << 8) | (p[s + 2]! << 16) | (p[s + 3]! << 24)) >>> 0);
    let t = this.times.get(sec);
    if (t === undefined) {
      const str = formatDumpTime(BigInt(sec));
      if (str === undefined) return undefined;
      if (this.times.size >= TIME_CACHE) this.times.clear();
      t = ascii(str);
      this.times.set(sec, t);
    }
    return t;
  }
}
