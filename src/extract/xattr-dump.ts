import { spawnSync } from 'node:child_process';
import { dirDescriptor, joinPath, SHORT_PATH } from '../io/long-paths.js';

/**
 * The xattrs of an extracted tree, gathered as `getfattr --dump` writes them and set at the end with one
 * `setfattr --restore` (node has no setxattr; one process for the whole tree, not one per file).
 */
export class XattrDump {
  private readonly lines: string[] = [];
  /** Entries past SHORT_PATH, which setfattr cannot name from the destination: by their directory. */
  private readonly deep = new Map<string, string[]>();

  /** The xattrs of the entry at `rel` (a path relative to the destination; empty for its root). */
  add(rel: Uint8Array, xs: readonly { name: Uint8Array; value: Uint8Array }[]): void {
    if (!xs.length) return;
    let lines = this.lines;
    let name = rel;
    if (rel.length > SHORT_PATH) {
      const cut = rel.lastIndexOf(0x2f);
      const dir = Buffer.from(rel.subarray(0, cut)).toString('latin1');
      lines = this.deep.get(dir) ?? [];
      this.deep.set(dir, lines);
      name = rel.subarray(cut + 1);
    }
    lines.push(`# file: ${name.length ? esc(name) : '.'}`);
    for (const x of xs) lines.push(`${esc(x.name, true)}=0x${Buffer.from(x.value).toString('hex')}`);
    lines.push('');
  }

  /**
   * Sets them below `dest`; a missing setfattr or a refused xattr is a warning, not an error. The deep
   * entries are set by a run of setfattr per directory, working in a descriptor of it (long-paths.ts).
   */
  restore(dest: string, warn: (m: string) => void): void {
    restoreDump(dest, this.lines, warn);
    for (const [dir, lines] of this.deep) {
      const d = dirDescriptor(joinPath(Buffer.from(dest), Buffer.from(dir, 'latin1')));
      try {
        restoreDump(d.path.toString('latin1'), lines, warn);
      } finally {
        d.close();
      }
    }
  }
}

function restoreDump(cwd: string, lines: string[], warn: (m: string) => void): void {
  if (!lines.length) return;
  const dump = lines.join('\n') + '\n';
  const r = spawnSync('setfattr', ['-h', '--restore=-'], { cwd, input: Buffer.from(dump, 'latin1'), stdio: ['pipe', 'ignore', 'pipe'] });
  if (r.error) warn(`xattrs not restored: setfattr unavailable (${r.error.message})`);
  else if (r.status !== 0) warn(`some xattrs not restored: ${r.stderr.toString().trim()}`);
}

/** getfattr/setfattr dump escaping: octal for control bytes, backslash, '=' in names, and non-ASCII. */
function esc(b: Uint8Array, isName = false): string {
  let s = '';
  for (const c of b) {
    s += c < 0x21 || c > 0x7e || c === 0x5c || (isName && c === 0x3d) ? '\\' + c.toString(8).padStart(3, '0') : String.fromCharCode(c);
  }
  return s;
}
