/**
 * Path escaping as btrfs-progs `print_path_escaped` does it, byte by byte: paths are raw bytes (often not
 * UTF-8), so this works on bytes and returns a JS string of ASCII characters only.
 * `isprint` in the C locale accepts 0x20..0x7e; everything else, including bytes >= 0x80, becomes octal.
 */
const NAMED: Record<number, string> = {
  0x07: '\\a', 0x08: '\\b', 0x1b: '\\e', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t', 0x0b: '\\v',
  0x20: '\\ ', 0x5c: '\\\\',
};

function escapeByte(c: number): string {
  const named = NAMED[c];
  if (named !== undefined) return named;
  if (c >= 0x20 && c <= 0x7e) return String.fromCharCode(c);
  return '\\' + ((c >> 6) & 7) + ((c >> 3) & 7) + (c & 7);
}

export function escapePath(bytes: Uint8Array): string {
  let out = '';
  for (const c of bytes) out += escapeByte(c);
  return out;
}

/** Characters printed as they are: isprint() but for space and backslash. */
const PLAIN = /^[\x21-\x5b\x5d-\x7e]*$/;

/** The same for a binary string (one char per byte), as the dump printer builds its paths. */
export function escapeBinary(s: string): string {
  // most paths need no escape: one native scan instead of a string built char by char
  if (PLAIN.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) out += escapeByte(s.charCodeAt(i));
  return out;
}
