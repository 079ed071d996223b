/**
 * Path sanity for send streams. The kernel only ever sends relative paths made of plain names, but
 * btrfs-progs 6.2 does not check them: a `..` in a hostile stream makes `btrfs receive` write outside the
 * subvolume. Everything that acts on stream paths (extract, verify) goes through these checks.
 */

const SLASH = 0x2f;
const DOT = 0x2e;

/** Names the kernel cannot produce: any of these in a path means the stream is hostile or corrupt. */
export type PathProblem = 'absolute' | 'dotdot' | 'dot' | 'empty-component' | 'nul' | 'empty';

export interface PathCheck {
  problem: PathProblem;
  message: string;
}

export interface PathCheckOptions {
  /**
   * Whether the empty path (the subvolume root, which the kernel sends for CHOWN/CHMOD/UTIMES/SET_XATTR
   * of the root directory) is acceptable.
   */
  allowRoot?: boolean;
}

const MESSAGES: Record<PathProblem, string> = {
  absolute: 'absolute path',
  dotdot: '".." component',
  dot: '"." component',
  'empty-component': 'empty component (leading, trailing or doubled "/")',
  nul: 'NUL byte in path',
  empty: 'empty path where a name is required',
};

/** The first problem of a stream path, or null when it is a plain relative path of names. */
export function checkStreamPath(path: Uint8Array, opts: PathCheckOptions = {}): PathCheck | null {
  const fail = (problem: PathProblem): PathCheck => ({ problem, message: MESSAGES[problem] });
  if (path.length === 0) return opts.allowRoot ? null : fail('empty');
  if (path.includes(0)) return fail('nul');
  if (path[0] === SLASH) return fail('absolute');
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== SLASH) continue;
    const len = i - start;
    if (len === 0) return fail('empty-component');
    if (len === 1 && path[start] === DOT) return fail('dot');
    if (len === 2 && path[start] === DOT && path[start + 1] === DOT) return fail('dotdot');
    start = i + 1;
  }
  return null;
}

/** The components of a path that passed `checkStreamPath` (none for the root). */
export function pathComponents(path: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== SLASH) continue;
    if (i > start) out.push(path.subarray(start, i));
    start = i + 1;
  }
  return out;
}

/** A subvolume name from SUBVOL/SNAPSHOT: one plain component (it becomes a directory of the target). */
export function checkSubvolName(path: Uint8Array): PathCheck | null {
  const c = checkStreamPath(path);
  if (c) return c;
  if (path.includes(SLASH)) return { problem: 'empty-component', message: 'subvolume name contains "/"' };
  return null;
}

/** Printable form for messages: latin1 keeps one char per byte, JSON.stringify escapes control bytes. */
export function showPath(path: Uint8Array): string {
  return JSON.stringify(Buffer.from(path.buffer, path.byteOffset, path.length).toString('latin1'));
}

export { formatUuid, parseUuid, isZeroUuid as isNullUuid } from '../util/uuid.js';
