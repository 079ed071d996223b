import { spawnSync } from 'node:child_process';

/**
 * The xattrs of an extracted tree, gathered as `getfattr --dump` writes them and set at the end with one
 * `setfattr --restore` (node has no setxattr; one process for the whole tree, not one per file).
 */
export class XattrDump {
  private readonly lines: string[] = [];

  /** The xattrs of the entry at `rel` (a path relative to the destination; empty for its root). */
  add(rel: Uint8Array, xs: readonly { name: Uint8Array; value: Uint8Array }[]): void {
    if (!xs.length) return;
    this.lines.push(`# file: ${rel.length ? esc(rel) : '.'}`);
    for (const x of xs) this.lines.push(`${esc(x.name, true)}=0x${Buffer.from(x.value).toString('hex')}`);
    this.lines.push('');
  }

  /** Sets them below `dest`; a missing setfattr or a refused xattr is a warning, not an error. */
  restore(dest: string, warn: (m: string) => void): void {
    if (!this.lines.length) return;
    const dump = this.lines.join('\n') + '\n';
    const r = spawnSync('setfattr', ['-h', '--restore=-'], { cwd: dest, input: Buffer.from(dump, 'latin1'), stdio: ['pipe', 'ignore', 'pipe'] });
    if (r.error) warn(`xattrs not restored: setfattr unavailable (${r.error.message})`);
    else if (r.status !== 0) warn(`some xattrs not restored: ${r.stderr.toString().trim()}`);
  }
}

/** getfattr/setfattr dump escaping: octal for control bytes, backslash, '=' in names, and non-ASCII. */
function esc(b: Uint8Array, isName = false): string {
  let s = '';
  for (const c of b) {
    s += c < 0x21 || c > 0x7e || c === 0x5c || (isName && c === 0x3d) ? '\\' + c.toString(8).padStart(3, '0') : String.fromCharCode(c);
  }
  return s;
}
