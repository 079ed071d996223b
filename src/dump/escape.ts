/**
 * Path escaping as btrfs-progs `print_path_escaped` does it, byte by byte: paths are raw bytes (often not
 * UTF-8), so this works on bytes and returns a JS string of ASCII characters only.
 * `isprint` in the C locale accepts 0x20..0x7e; everything else, including bytes >= 0x80, becomes octal.
 */
const NAMED: Record<number, string> = {
  0x07: '\\a', 0x08: '\\b', 0x1b: '\\e', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t', 0x0b: '\\v',
  0x20: '\\ ', 0x5c: '\\\\',
};

export function escapePath(bytes: Uint8Array): string {
  let out = '';
  for (const c of bytes) {
    const named = NAMED[c];
    if (named !== undefined) out += named;
    else if (c >= 0x20 && c <= 0x7e) out += String.fromCharCode(c);
    else out += '\\' + ((c >> 6) & 7) + ((c >> 3) & 7) + (c & 7);
  }
  return out;
}
