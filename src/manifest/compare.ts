import { comparePathBytes } from './format.js';

/**
 * Compares two manifests entry by entry (keyed by path) and describes every difference in terms a person
 * can act on: which path, which fields, old and new line.
 */

const NAMED: Record<string, number> = {
  a: 0x07, b: 0x08, e: 0x1b, f: 0x0c, n: 0x0a, r: 0x0d, t: 0x09, v: 0x0b, ' ': 0x20, '\\': 0x5c,
};

/** Inverse of escapePath (and of formatPath: `.` is the root). Used only to order paths by raw bytes. */
export function unescapePath(s: string): Uint8Array {
  if (s === '.') return new Uint8Array();
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c !== '\\') {
      out.push(c.charCodeAt(0) & 0xff);
      continue;
    }
    const next = s[i + 1] ?? '';
    const named = NAMED[next];
    if (named !== undefined) {
      out.push(named);
      i += 1;
    } else if (/^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      out.push(parseInt(s.slice(i + 1, i + 4), 8) & 0xff);
      i += 3;
    } else {
      out.push(0x5c);
    }
  }
  return Uint8Array.from(out);
}

export interface ParsedLine {
  path: string;
  type: string;
  fields: Map<string, string>;
  line: string;
}

/** Escaped fields never contain a raw space, so splitting on spaces is exact. */
export function parseManifestLine(line: string): ParsedLine {
  const parts = line.split(' ');
  const fields = new Map<string, string>();
  for (const p of parts.slice(2)) {
    const eq = p.indexOf('=');
    if (eq < 0) fields.set(p, '');
    else fields.set(p.slice(0, eq), p.slice(eq + 1));
  }
  return { path: parts[0] ?? '', type: parts[1] ?? '', fields, line };
}

export type ManifestDiff =
  | { kind: 'missing'; path: string; expected: string }
  | { kind: 'extra'; path: string; actual: string }
  | { kind: 'changed'; path: string; fields: string[]; expected: string; actual: string };

/** Which field names differ (`type` included); fields present on one side only count as different. */
function changedFields(a: ParsedLine, b: ParsedLine): string[] {
  const out: string[] = [];
  if (a.type !== b.type) out.push('type');
  const keys = new Set([...a.fields.keys(), ...b.fields.keys()]);
  for (const k of keys) if (a.fields.get(k) !== b.fields.get(k)) out.push(k);
  return out;
}

export function diffManifests(expected: Iterable<string>, actual: Iterable<string>): ManifestDiff[] {
  const exp = new Map<string, ParsedLine>();
  for (const l of expected) if (l.length > 0) exp.set(parseManifestLine(l).path, parseManifestLine(l));
  const act = new Map<string, ParsedLine>();
  for (const l of actual) if (l.length > 0) act.set(parseManifestLine(l).path, parseManifestLine(l));
  const paths = [...new Set([...exp.keys(), ...act.keys()])];
  paths.sort((a, b) => comparePathBytes(unescapePath(a), unescapePath(b)));
  const diffs: ManifestDiff[] = [];
  for (const path of paths) {
    const e = exp.get(path);
    const a = act.get(path);
    if (e && !a) diffs.push({ kind: 'missing', path, expected: e.line });
    else if (a && !e) diffs.push({ kind: 'extra', path, actual: a.line });
    else if (a && e && a.line !== e.line) {
      diffs.push({ kind: 'changed', path, fields: changedFields(e, a), expected: e.line, actual: a.line });
    }
  }
  return diffs;
}

/** Unified-diff-like text: `-` expected, `+` actual, with a `@` line naming the path and fields. */
export function renderDiff(diffs: readonly ManifestDiff[], expectedName: string, actualName: string): string {
  const out = [`--- ${expectedName}`, `+++ ${actualName}`];
  for (const d of diffs) {
    if (d.kind === 'missing') out.push(`@ ${d.path}: missing`, `- ${d.expected}`);
    else if (d.kind === 'extra') out.push(`@ ${d.path}: unexpected`, `+ ${d.actual}`);
    else out.push(`@ ${d.path}: ${d.fields.join(', ')} differ`, `- ${d.expected}`, `+ ${d.actual}`);
  }
  out.push(`${diffs.length} difference(s)`);
  return out.join('\n') + '\n';
}
