import { escapePath } from '../dump/escape.js';
import { ReceiveError } from '../errors.js';

const NAME_MAX = 255;
const SLASH = 0x2f;
const DOT = 0x2e;

/**
 * Splits a stream path into components, refusing anything that could leave the subvolume or that no
 * kernel sender produces: absolute paths, `.`/`..` components, empty components, NUL bytes, names over
 * 255 bytes. btrfs-progs 6.2 passes such paths to the kernel relative to the mount, which lets a crafted
 * stream write outside the subvolume; here they never reach the image. The empty path is the subvolume
 * root itself (the kernel sends it for the root's chown/chmod/utimes).
 */
export function splitStreamPath(path: Uint8Array, what = 'path'): Uint8Array[] {
  if (path.length === 0) return [];
  if (path[0] === SLASH) throw new ReceiveError('PATH_ABSOLUTE', `${what} is absolute: refusing to leave the subvolume`);
  if (path.includes(0)) throw new ReceiveError('PATH_NUL', `${what} contains a NUL byte`);
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== SLASH) continue;
    const part = path.subarray(start, i);
    start = i + 1;
    // a single trailing slash (as in "dir/") is harmless; anything else empty is not
    if (part.length === 0 && i === path.length && parts.length > 0) break;
    if (part.length === 0) throw new ReceiveError('PATH_EMPTY_COMPONENT', `${what} has an empty component`);
    if (part.length === 1 && part[0] === DOT) throw new ReceiveError('PATH_DOT', `${what} has a "." component`);
    if (part.length === 2 && part[0] === DOT && part[1] === DOT) {
      throw new ReceiveError('PATH_DOTDOT', `${what} has a ".." component: refusing to leave the subvolume`);
    }
    if (part.length > NAME_MAX) throw new ReceiveError('NAME_TOO_LONG', `${what} has a component of ${part.length} bytes (max ${NAME_MAX})`);
    parts.push(part);
  }
  return parts;
}

/** A SUBVOL/SNAPSHOT name: one path component, like the kernel's subvolume names. */
export function subvolumeName(path: Uint8Array): Uint8Array {
  if (path.length === 0 || path.includes(0x2f) || path.includes(0) || (path.length <= 2 && path.every((b) => b === 0x2e))) {
    throw new ReceiveError('BAD_SUBVOL_NAME', `subvolume name ${escapePath(path)} is not a single path component`);
  }
  if (path.length > 255) throw new ReceiveError('NAME_TOO_LONG', 'subvolume name over 255 bytes');
  return path;
}
