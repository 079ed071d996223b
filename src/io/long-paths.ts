import { closeSync, constants, openSync } from 'node:fs';

/**
 * Trees deeper than PATH_MAX. A path of 4,096 bytes or more (with its NUL) fails every path system call
 * with ENAMETOOLONG, yet filesystems and images hold such trees (each name is short; only the whole path is
 * long), and a stream's paths (up to 4,095 bytes) pass it under any destination directory. Node has no
 * openat(2), so a deep directory is reached through a descriptor of it opened on the way down:
 * `/proc/<pid>/fd/N` names it in a few bytes (the kernel follows that link to the directory itself), and
 * the paths under it stay short. The pid rather than `self`: helpers this process starts (getfattr run
 * in such a directory, the python helper) reach it by the same path.
 */

/**
 * Paths up to this length are used as they are. A directory path past it is replaced by its descriptor's
 * before anything under it is named, so no path handed to the kernel grows past SHORT_PATH plus two names
 * (255 bytes each) and a slash or two — well under 4,096.
 */
export const SHORT_PATH = 3072;

/** O_PATH (Linux: 010000000 on every architecture node runs on; not in node's constants): a descriptor for naming, not for I/O, and only search permission needed on the directory. */
const O_PATH = 0o10000000;

/** A directory named by a short path: itself, or through a descriptor held until close(). */
export interface DirPath {
  readonly path: Buffer;
  /** Closes the descriptor behind `path`, if there is one; `path` must not be used after. */
  close(): void;
}

const SLASH = 0x2f;
const NO_DESCRIPTOR: DirPath['close'] = () => {};

/** `base` + '/' + `name`, the two joined as bytes. */
export function joinPath(base: Buffer, name: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(base.length + 1 + name.length);
  base.copy(out, 0);
  out[base.length] = SLASH;
  out.set(name, base.length + 1);
  return out;
}

/** `dir` as it is while it is short, else dirDescriptor(dir). */
export function dirPath(dir: Buffer): DirPath {
  return dir.length <= SHORT_PATH ? { path: dir, close: NO_DESCRIPTOR } : dirDescriptor(dir);
}

/**
 * A descriptor of directory `dir` (any length), named `/proc/<pid>/fd/N`: ASCII, so it also serves as a
 * helper's working directory whatever bytes the names hold. O_NOFOLLOW: a symlink in its place is refused
 * (ELOOP), not followed.
 */
export function dirDescriptor(dir: Buffer): DirPath {
  // a path the kernel takes as it is (PATH_MAX with its NUL) is opened directly: one call, not a chain
  const r = dir.length < 4096 ? { path: dir, close: NO_DESCRIPTOR } : reach(dir);
  let fd: number;
  try {
    fd = openSync(r.path, O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } finally {
    r.close();
  }
  return held(fd, Buffer.from(`/proc/${process.pid}/fd/${fd}`));
}

/**
 * Any path (a file's, a directory's) as a path the kernel takes: `path` itself while it is short, else a
 * path through a descriptor of a directory on its way, opened piece by piece (each piece short; each
 * descriptor opened through the one before, which is then closed). Symlinks on the way are followed as a
 * system call on `path` would follow them. A path without a slash to cut at is returned as it is, for the
 * call to fail as it would.
 */
export function reach(path: Buffer): DirPath {
  if (path.length <= SHORT_PATH) return { path, close: NO_DESCRIPTOR };
  let prefix = Buffer.alloc(0);
  let pos = 0;
  let fd = -1;
  try {
    while (prefix.length + path.length - pos > SHORT_PATH) {
      const cut = path.lastIndexOf(SLASH, pos + SHORT_PATH - prefix.length);
      if (cut <= pos) break;
      const next = openSync(Buffer.concat([prefix, path.subarray(pos, cut)]), O_PATH | constants.O_DIRECTORY);
      if (fd >= 0) closeSync(fd);
      fd = next;
      prefix = Buffer.from(`/proc/${process.pid}/fd/${fd}`);
      pos = cut;
    }
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    throw e;
  }
  if (fd < 0) return { path, close: NO_DESCRIPTOR };
  return held(fd, Buffer.concat([prefix, path.subarray(pos)]));
}

/** `path` (through descriptor `fd`) with the close of `fd`, once. */
function held(fd: number, path: Buffer): DirPath {
  let open = true;
  return {
    path,
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** reach(path), `fn` given the path it gives, the descriptor closed after (also when `fn` throws). */
export async function throughShortPath<T>(path: Buffer, fn: (short: Buffer) => Promise<T>): Promise<T> {
  const r = reach(path);
  try {
    return await fn(r.path);
  } catch (e) {
    throw namingWhole(e, r.path, path);
  } finally {
    r.close();
  }
}

/**
 * A system call's error made through a descriptor path (`short`, or a path under it) named by the whole
 * path it stands for (`whole`): an error line must say which file the user has, not /proc/PID/fd/N.
 */
export function namingWhole(e: unknown, short: Buffer, whole: Buffer): unknown {
  if (!(e instanceof Error) || short === whole) return e;
  const s = short.toString();
  const w = whole.toString();
  const x = e as Error & { path?: unknown; dest?: unknown };
  const fix = (v: unknown): unknown => (typeof v === 'string' && v.startsWith(s) ? w + v.slice(s.length) : v);
  x.path = fix(x.path);
  x.dest = fix(x.dest);
  x.message = x.message.split(s).join(w);
  return e;
}
