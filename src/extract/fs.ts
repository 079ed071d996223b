import { constants, promises as fsp } from 'node:fs';
import { ReceiveError } from '../errors.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../stream/constants.js';
import type { CloneCmd } from '../stream/types.js';
import type { SyscallHelper } from './syscall-helper.js';
import { checkStreamPath, pathComponents, showPath } from '../tools/paths.js';
import { type DirPath, dirDescriptor, joinPath, SHORT_PATH } from '../io/long-paths.js';

/**
 * Stream paths → absolute paths under one subvolume directory, never leaving it: the path must be plain
 * names (no `..`, no absolute path, no empty component, no NUL) and every parent component must be a
 * real directory (lstat, so a symlink planted by an earlier command is refused instead of followed).
 * The leaf itself is never followed either: callers use O_NOFOLLOW, lchown, lstat, link(2) (which does
 * not follow), rename/unlink (which act on the name).
 */

const SLASH = Buffer.from('/');

export class SubvolPaths {
  constructor(readonly root: Buffer) {}

  /** The absolute path of `rel` after checking it; `allowRoot` for commands that may target the root. */
  async resolve(rel: Uint8Array, allowRoot = false): Promise<Buffer> {
    const bad = checkStreamPath(rel, { allowRoot });
    if (bad) {
      throw new ReceiveError('EXTRACT_UNSAFE_PATH', `refusing stream path ${showPath(rel)}: ${bad.message}`, {
        path: Buffer.from(rel).toString('latin1'),
      });
    }
    if (rel.length === 0) return this.root;
    const comps = pathComponents(rel);
    let cur = this.root;
    let through = false;
    for (let i = 0; i < comps.length - 1; i++) {
      cur = joinPath(cur, comps[i]!);
      let st;
      try {
        st = await fsp.lstat(cur);
      } catch (e) {
        throw new ReceiveError('EXTRACT_NO_PARENT', `parent of ${showPath(rel)} does not exist: ${(e as Error).message}`, {
          path: Buffer.from(rel).toString('latin1'), cause: e,
        });
      }
      if (!st.isDirectory()) {
        const what = st.isSymbolicLink() ? 'a symlink (not followed)' : 'not a directory';
        throw new ReceiveError('EXTRACT_UNSAFE_PATH', `refusing stream path ${showPath(rel)}: component ${showPath(comps[i]!)} is ${what}`, {
          path: Buffer.from(rel).toString('latin1'),
        });
      }
      if (cur.length > SHORT_PATH) {
        cur = hold(dirDescriptor(cur));
        through = true;
      }
    }
    return through ? joinPath(cur, comps[comps.length - 1]!) : Buffer.concat([this.root, SLASH, rel]);
  }
}

/**
 * The descriptors behind resolved paths past SHORT_PATH (long-paths.ts). A resolved path is used at once,
 * by the calls of one command (a RENAME or a CLONE resolves two), so the last HELD stay open and older
 * ones are closed as new ones come; releaseHeldPaths closes them all.
 */
const HELD = 16;
const held: DirPath[] = [];

function hold(d: DirPath): Buffer {
  held.push(d);
  if (held.length > HELD) held.shift()!.close();
  return d.path;
}

/** Closes what SubvolPaths.resolve holds open: its paths are not used after this. */
export function releaseHeldPaths(): void {
  for (const d of held.splice(0)) d.close();
}

export const O_WRITE_NOFOLLOW = constants.O_WRONLY | constants.O_NOFOLLOW;
export const O_READ_NOFOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;
export const O_CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** pwrite all of `data` (fs writes may be short). */
export async function writeAll(fh: fsp.FileHandle, data: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, pos + done);
    if (bytesWritten <= 0) throw new ReceiveError('EXTRACT_WRITE', `short write at ${pos + done}`);
    done += bytesWritten;
  }
}

/** Copies `len` bytes between two open files in 1 MiB pieces; returns how many bytes the source had. */
export async function copyRange(src: fsp.FileHandle, srcOff: number, dst: fsp.FileHandle, dstOff: number, len: number): Promise<number> {
  const piece = Buffer.allocUnsafe(Math.min(len, 1 << 20));
  let done = 0;
  while (done < len) {
    const want = Math.min(piece.length, len - done);
    const { bytesRead } = await src.read(piece, 0, want, srcOff + done);
    if (bytesRead === 0) break;
    await writeAll(dst, piece.subarray(0, bytesRead), dstOff + done);
    done += bytesRead;
  }
  return done;
}

/** Writes zeros over [off, off+len) in bounded pieces (a portable stand-in for punching a hole). */
export async function zeroRange(fh: fsp.FileHandle, off: number, len: number): Promise<void> {
  const zeros = Buffer.alloc(Math.min(len, 1 << 20));
  for (let done = 0; done < len; done += zeros.length) {
    await writeAll(fh, zeros.subarray(0, Math.min(zeros.length, len - done)), off + done);
  }
}

/**
 * fallocate(2) for Node, which has none: the same file content and size, not the same allocation.
 * A punched hole reads as zeros (written, within the file); an allocation past EOF without KEEP_SIZE
 * extends the file with zeros; pure preallocation changes nothing visible.
 */
export async function emulateFallocate(fh: fsp.FileHandle, mode: number, offset: bigint, length: bigint): Promise<void> {
  checkFallocateMode(mode);
  // vfs_fallocate refuses ranges past the filesystem's maximum file size (2^63-1 for btrfs) with EFBIG
  if (offset + length > (1n << 63n) - 1n) throw new ReceiveError('EXTRACT_FILE_TOO_BIG', `FALLOCATE range ${offset}+${length} ends past 2^63-1`);
  const size = BigInt((await fh.stat()).size);
  const end = offset + length;
  if (mode & FALLOC_FL_PUNCH_HOLE) {
    // clipped to the file, so any range is fine
    if (offset < size) await zeroRange(fh, Number(offset), Number((end < size ? end : size) - offset));
  } else if (!(mode & FALLOC_FL_KEEP_SIZE) && end > size) {
    await fh.truncate(fileRange(offset, length) + Number(length));
  }
}

/**
 * mknod through the helper. Where that cannot work (no python3; a device node without root) an empty
 * regular file takes the name instead, so the commands that follow (rename, chown, utimes) still apply;
 * returns why, for the caller's warning.
 */
export async function makeSpecial(helper: SyscallHelper, abs: Buffer, mode: number, dev: bigint): Promise<string | undefined> {
  const type = mode & constants.S_IFMT;
  const device = type === constants.S_IFCHR || type === constants.S_IFBLK;
  let why: string | undefined;
  if (!helper.available) why = 'python3 is not available for mknod';
  else if (device && process.getuid?.() !== 0) why = 'device nodes need root';
  if (why === undefined) {
    await helper.mknod(abs, mode, dev);
    return undefined;
  }
  await (await fsp.open(abs, O_CREATE_NEW, 0o600)).close();
  return why;
}

/**
 * A file range as a JS number, refused when its end passes 2^53: offsets are used as doubles here, and
 * past that a position would silently round (no filesystem Node runs on holds files that large anyway;
 * the kernel's own limit is 2^63-1).
 */
export function fileRange(off: bigint, len: bigint): number {
  if (off < 0n || len < 0n || off + len > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ReceiveError('EXTRACT_FILE_TOO_BIG', `file range ${off}+${len} ends past 2^53 bytes`);
  }
  return Number(off);
}

/** The fallocate(2) modes a receiver can be asked for; anything else the kernel refuses too. */
export function checkFallocateMode(mode: number): void {
  const ok = mode === 0 || mode === FALLOC_FL_KEEP_SIZE || mode === (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  if (!ok) throw new ReceiveError('EXTRACT_FALLOCATE_MODE', `unsupported FALLOCATE mode ${mode}`);
}

/**
 * CLONE as a byte copy. Like the clone ioctl btrfs receive uses, length 0 means "to the source's EOF";
 * the source must be a regular file and hold the whole range. Returns the bytes copied.
 */
export async function cloneRange(src: fsp.FileHandle, c: CloneCmd, dst: fsp.FileHandle): Promise<number> {
  const st = await src.stat({ bigint: true });
  if (!st.isFile()) throw new ReceiveError('EXTRACT_CLONE_NOT_FILE', 'clone source is not a regular file');
  const len = c.cloneLen === 0n ? (st.size > c.cloneOffset ? st.size - c.cloneOffset : 0n) : c.cloneLen;
  const srcOff = fileRange(c.cloneOffset, len);
  const dstOff = fileRange(c.fileOffset, len);
  const got = await copyRange(src, srcOff, dst, dstOff, Number(len));
  if (got < Number(len)) {
    throw new ReceiveError('EXTRACT_CLONE_RANGE', `clone source has only ${got} of ${len} bytes at offset ${c.cloneOffset}`);
  }
  return got;
}

/**
 * `mkdir -p`: each missing directory of `dir` made in turn. Node's own recursive mkdir retries forever
 * where a filesystem answers ENOENT for a name under a directory that exists (`extract IMG /proc/x` spun at
 * full CPU and never ended); here that is the error it is.
 */
export async function makeDirs(dir: string | Buffer): Promise<void> {
  const path = Buffer.isBuffer(dir) ? dir.toString('latin1') : dir;
  const enc = Buffer.isBuffer(dir) ? 'latin1' : 'utf8';
  const parts = path.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    if (prefix === '' || prefix === '.' || parts[i - 1] === '') continue;
    try {
      await fsp.mkdir(Buffer.from(prefix, enc));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // something of that name: a directory (or a link to one) will do, anything else is what mkdir -p says:
      // the destination itself "exists", a file on the way to it is "not a directory"
      if ((await fsp.stat(Buffer.from(prefix, enc))).isDirectory()) continue;
      const code = i === parts.length || parts.slice(i).every((x) => x === '') ? 'EEXIST' : 'ENOTDIR';
      throw Object.assign(new Error(`${code}: ${code === 'EEXIST' ? 'file already exists' : 'not a directory'}, mkdir '${prefix}'`), { code, syscall: 'mkdir', path: prefix });
    }
  }
}
