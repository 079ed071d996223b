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
};

interface SystemError extends Error {
  code: string;
  syscall?: string;
  path?: string;
  dest?: string;
}

function isSystemError(e: unknown): e is SystemError {
  if (!(e instanceof Error)) return false;
  const x = e as Partial<SystemError>;
  return typeof x.code === 'string' && /^E[A-Z0-9]+$/.test(x.code) && typeof x.syscall === 'string';
}

/** BtrfsTsError codes that mean the command line was wrong, not the input. */
function isUsage(code: string): boolean {
  return code === 'usage' || code === 'USAGE' || code.endsWith('_USAGE');
}

/** One line and an exit status for anything a command threw; `undefined` line means a bug (stack wanted). */
export function describeFailure(e: unknown): { line: string; status: number } | undefined {
  if (e instanceof BtrfsTsError) {
    const status = e.code === 'interrupted' || e.code === 'INTERRUPTED' ? EXIT_INTERRUPTED : isUsage(e.code) ? EXIT_USAGE : EXIT_FAILURE;
    return { line: `btrfs-ts: ERROR: ${e.describe()}`, status };
  }
  if (isSystemError(e)) {
    // a system call refused a file the user named: say which file and why, as coreutils does
    const what = ERRNO_TEXT[e.code] ?? e.message.replace(/^E[A-Z0-9]+: /, '').replace(/, \w+ .*$/, '');
    const where = e.path !== undefined ? `${e.path}${e.dest !== undefined ? ` -> ${e.dest}` : ''}: ` : '';
    return { line: `btrfs-ts: ERROR: ${where}${what} (${e.syscall}) [${e.code}]`, status: EXIT_FAILURE };
  }
  return undefined;
}
