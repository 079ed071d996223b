import { BtrfsTsError } from '../errors.js';

/**
 * Exit statuses of every command (listed in --help and the README): a user or a script tells a refused
 * input (1) from a mistyped command line (2), an interruption (130) and a bug in btrfs-ts (70).
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERNAL = 70;
export const EXIT_INTERRUPTED = 130;

export const EXIT_STATUS_HELP = `
Exit status:
  0    success
  1    failure: bad or refused input, a missing or unreadable file, a check that found differences
  2    usage error: unknown command or option, missing or bad argument
  70   internal error (a bug in btrfs-ts: please report it with the stack trace printed)
  130  interrupted (Ctrl-C or SIGTERM)`;

/** What the system calls say, in the words of coreutils (strerror), without Node's "ENOENT: " prefix. */
const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'already exists',
  ENOTEMPTY: 'directory not empty',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EBUSY: 'device or resource busy',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files',
  EFBIG: 'file too large',
  EIO: 'input/output error',
  ENXIO: 'no such device or address',
  ENODEV: 'no such device',
  EINVAL: 'invalid argument',
  EXDEV: 'cross-device link',
  EUCLEAN: 'structure needs cleaning',
};

/**
 * Linux errnos libuv has no name for (Node then reports code "Unknown system error -117"): btrfs answers
 * a read of corrupt metadata with EUCLEAN, so reading a damaged mounted tree meets it.
 */
const UNNAMED_ERRNO: Record<number, string> = { 117: 'EUCLEAN', 61: 'ENODATA', 74: 'EBADMSG' };
interface SystemError extends Error {
  code: string;
  syscall?: string;
  path?: string;
  dest?: string;
}

/** The errno name of a failed system call (`undefined` when `e` is not one). */
function systemErrorCode(e: unknown): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const x = e as Partial<SystemError> & { errno?: unknown };
  if (typeof x.syscall !== 'string' || typeof x.code !== 'string') return undefined;
  if (/^Unknown system error/.test(x.code) && typeof x.errno === 'number') return UNNAMED_ERRNO[-x.errno] ?? `errno ${-x.errno}`;
  return /^E[A-Z0-9]+$/.test(x.code) ? x.code : undefined;
}

/** BtrfsTsError codes that mean the command line was wrong, not the input. */
function isUsage(code: string): boolean {
  return code === 'USAGE' || code.endsWith('_USAGE');
}

/** One line and an exit status for anything a command threw; `undefined` line means a bug (stack wanted). */
export function describeFailure(e: unknown): { line: string; status: number } | undefined {
  if (e instanceof BtrfsTsError) {
    const status = e.code === 'INTERRUPTED' ? EXIT_INTERRUPTED : isUsage(e.code) ? EXIT_USAGE : EXIT_FAILURE;
    return { line: `btrfs-ts: ERROR: ${e.describe()}`, status };
  }
  const code = systemErrorCode(e);
  if (code !== undefined) {
    // a system call refused a file the user named: say which file and why, as coreutils does
    const x = e as SystemError;
    const what = ERRNO_TEXT[code] ?? x.message.replace(/^E[A-Z0-9]+: /, '').replace(/, \w+ .*$/, '').replace(/^Unknown system error -\d+: /, '');
    const where = x.path !== undefined ? `${x.path}${x.dest !== undefined ? ` -> ${x.dest}` : ''}: ` : '';
    return { line: `btrfs-ts: ERROR: ${where}${what} (${x.syscall}) [${code}]`, status: EXIT_FAILURE };
  }
  return undefined;
}
