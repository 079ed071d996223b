import { spawn } from 'node:child_process';
import { BtrfsTsError } from '../errors.js';
import type { Xattr } from '../manifest/types.js';

/**
 * Node has no xattr API, so the xattrs of a whole tree are read with ONE `getfattr -R` run (attr package)
 * instead of one process per file. Paths cannot be passed to a child as argv when they are not UTF-8, so
 * the walk is left to getfattr itself and its output is parsed as bytes.
 *
 * getfattr's output escaping (attr's quote()): `\n`, `\r` and `\` in paths and names become `\ooo` octal,
 * `=` in xattr names becomes `\075`; every other byte (spaces, other control bytes, bytes >= 0x80) is
 * printed raw. Lines are therefore split on raw newlines, and `\ooo` is the only escape to undo.
 */

function unescapeOctal(b: Buffer): Buffer {
  if (!b.includes(0x5c)) return b;
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    const c = b[i] as number;
    if (c === 0x5c && i + 3 < b.length && isOct(b[i + 1]) && isOct(b[i + 2]) && isOct(b[i + 3])) {
      out.push((((b[i + 1] as number) - 48) << 6) | (((b[i + 2] as number) - 48) << 3) | ((b[i + 3] as number) - 48));
      i += 3;
    } else {
      out.push(c);
    }
  }
  return Buffer.from(out);
}

function isOct(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x37;
}

/** Map key for a relative path: latin1 maps bytes 1:1 to code units, so the key is exact. */
export function pathKey(rel: Uint8Array): string {
  return Buffer.from(rel.buffer, rel.byteOffset, rel.length).toString('latin1');
}

/** Parses `getfattr -d -e hex` output; keys are pathKey() of the path relative to the walked root. */
export function parseGetfattrDump(out: Buffer): Map<string, Xattr[]> {
  const result = new Map<string, Xattr[]>();
  let current: Xattr[] | undefined;
  const FILE = Buffer.from('# file: ');
  let start = 0;
  while (start < out.length) {
    let end = out.indexOf(0x0a, start);
    if (end < 0) end = out.length;
    const line = out.subarray(start, end);
    start = end + 1;
    if (line.length === 0) {
      current = undefined;
    } else if (line.subarray(0, FILE.length).equals(FILE)) {
      let p = unescapeOctal(line.subarray(FILE.length));
      if (p.length === 1 && p[0] === 0x2e) p = Buffer.alloc(0);
      else if (p[0] === 0x2e && p[1] === 0x2f) p = p.subarray(2);
      current = [];
      result.set(pathKey(p), current);
    } else if (current) {
      const eq = line.indexOf(0x3d);
      const name = unescapeOctal(eq < 0 ? line : line.subarray(0, eq));
      const raw = eq < 0 ? '' : line.subarray(eq + 1).toString('latin1');
      if (!raw.startsWith('0x') && raw !== '') {
        throw new BtrfsTsError('XATTR_PARSE', `unexpected getfattr value encoding: ${raw.slice(0, 20)}`);
      }
      current.push({ name: new Uint8Array(name), value: new Uint8Array(Buffer.from(raw.slice(2), 'hex')) });
    }
  }
  return result;
}

/**
 * Runs getfattr over the whole tree under `root` (no symlink following) and returns xattrs per path,
 * keyed by pathKey of the path relative to `root` with `prefix` and a slash before it when given.
 * getfattr names each file by its path from `root` and cannot reach those of PATH_MAX bytes or more: it
 * says "File name too long" for them and goes on; the caller reads such a subtree again from a
 * descriptor of a directory deep in it (io/long-paths.ts).
 */
export async function readTreeXattrs(root: string, prefix?: Buffer): Promise<Map<string, Xattr[]>> {
  const child = spawn('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], {
    cwd: root,
    env: { ...process.env, LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', (e) => reject(e));
    child.on('close', (c) => resolve(c ?? -1));
  }).catch((e: unknown) => {
    throw new BtrfsTsError('XATTR_TOOL', `cannot run getfattr (install the attr package or use --no-xattrs): ${String(e)}`);
  });
  if (code !== 0) {
    const problems = Buffer.concat(err).toString().split('\n').filter((l) => l !== '' && !l.endsWith(': File name too long'));
    if (code !== 1 || problems.length > 0) {
      throw new BtrfsTsError('XATTR_TOOL', `getfattr failed (exit ${code}): ${problems.join('; ').trim() || Buffer.concat(err).toString().trim()}`);
    }
  }
  const found = parseGetfattrDump(Buffer.concat(out));
  if (!prefix?.length) return found;
  const under = new Map<string, Xattr[]>();
  const head = pathKey(prefix);
  for (const [rel, xs] of found) under.set(rel === '' ? head : `${head}/${rel}`, xs);
  return under;
}
