import { createHash } from 'node:crypto';
import { escapePath } from '../dump/escape.js';
import type { ManifestOptions, Timespec, TreeEntry, TreeSource, Xattr } from './types.js';

/**
 * Turns a tree into the manifest: one line per entry, sorted by raw path bytes, fields in a fixed order.
 * The format is specified in docs/manifest.md; change both together.
 */

/** Xattr values up to this many bytes are printed (escaped); longer ones as `sha256:<hex>`. */
export const XATTR_INLINE_MAX = 64;

const te = new TextEncoder();

/** Byte-wise ordering of raw paths (what `LC_ALL=C sort` would do on the unescaped names). */
export function comparePathBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * escapePath as `btrfs receive --dump` prints paths, except that its `\ ` for a space becomes `\040`, so
 * a manifest line holds raw spaces only between fields. (escapePath emits a raw space only right after
 * the backslash that escapes it, so replacing every space is exact.)
 */
export function escapeField(bytes: Uint8Array): string {
  return escapePath(bytes).replaceAll(' ', '040');
}

/** The root is printed as `.` so every line starts with a non-empty path field. */
export function formatPath(path: Uint8Array): string {
  return path.length === 0 ? '.' : escapeField(path);
}

export function formatTimespec(t: Timespec): string {
  return `${t.sec}.${String(t.nsec).padStart(9, '0')}`;
}

/** `=` separates an xattr's name from its value on the line, so it must not appear raw in the name. */
export function formatXattrName(name: Uint8Array): string {
  return escapeField(name).replaceAll('=', '\\075');
}

export function formatXattrValue(value: Uint8Array): string {
  if (value.length <= XATTR_INLINE_MAX) return escapeField(value);
  return 'sha256:' + createHash('sha256').update(value).digest('hex');
}

export async function sha256Content(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of chunks) h.update(chunk);
  return h.digest('hex');
}

function xattrFields(xattrs: readonly Xattr[], skip: readonly Uint8Array[]): string[] {
  const kept = xattrs.filter((x) => !skip.some((p) => startsWith(x.name, p)));
  kept.sort((a, b) => comparePathBytes(a.name, b.name));
  return kept.map((x) => `xattr.${formatXattrName(x.name)}=${formatXattrValue(x.value)}`);
}

function startsWith(s: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > s.length) return false;
  for (let i = 0; i < prefix.length; i++) if (s[i] !== prefix[i]) return false;
  return true;
}

/**
 * One manifest line. `linkGroup` is the smallest path of the entry's hard-link group when the group has
 * at least two members in the tree; `contentHash` is the sha256 of a regular file's content.
 */
export function formatLine(
  e: TreeEntry,
  extra: { linkGroup?: Uint8Array; contentHash?: string },
  opts: ManifestOptions = {},
): string {
  const f: string[] = [formatPath(e.path), e.type];
  f.push('mode=' + e.perm.toString(8).padStart(4, '0'), `uid=${e.uid}`, `gid=${e.gid}`);
  if (e.type === 'file' || e.type === 'symlink') f.push(`size=${e.size}`);
  f.push('mtime=' + formatTimespec(e.mtime));
  if (opts.atime) f.push('atime=' + formatTimespec(e.atime));
  if (opts.nlink) f.push(`nlink=${e.nlink}`);
  if (extra.contentHash !== undefined) f.push('sha256=' + extra.contentHash);
  if (e.type === 'symlink') f.push('target=' + escapeField(e.symlinkTarget ?? new Uint8Array()));
  if ((e.type === 'chr' || e.type === 'blk') && e.rdev) f.push(`rdev=${e.rdev.major}:${e.rdev.minor}`);
  if (extra.linkGroup !== undefined) f.push('link=' + formatPath(extra.linkGroup));
  const skip = (opts.skipXattrPrefixes ?? []).map((p) => te.encode(p));
  f.push(...xattrFields(e.xattrs, skip));
  return f.join(' ');
}

/**
 * Collects all entries (metadata only; memory is O(entries)), sorts them, then hashes file contents one
 * at a time while yielding lines, so memory never holds more than one read chunk of file data.
 */
export async function* formatManifest(source: TreeSource, opts: ManifestOptions = {}): AsyncGenerator<string> {
  const entries: TreeEntry[] = [];
  for await (const e of source.entries()) entries.push(e);
  entries.sort((a, b) => comparePathBytes(a.path, b.path));

  // Directories cannot be hard-linked; their nlink counts subdirectories on most filesystems.
  const groups = new Map<string, TreeEntry[]>();
  for (const e of entries) {
    if (e.type === 'dir' || e.nlink < 2) continue;
    const g = groups.get(e.inodeKey);
    if (g) g.push(e);
    else groups.set(e.inodeKey, [e]);
  }

  for (const e of entries) {
    const g = e.type === 'dir' ? undefined : groups.get(e.inodeKey);
    // Entries are already sorted, so the first member of a group is its smallest path.
    const linkGroup = g && g.length > 1 ? g[0]?.path : undefined;
    const contentHash = e.type === 'file' ? await sha256Content(e.readContent()) : undefined;
    yield formatLine(e, { linkGroup, contentHash }, opts);
  }
}
