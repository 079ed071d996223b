/** Bytes print_path_escaped prints as they are: isprint() but for space and backslash. */
const PLAIN = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) PLAIN[c] = c === 0x5c ? 0 : 1;
/** Its named escapes (the letter after the backslash); every other byte becomes \ooo. */
const NAMED = new Uint8Array(256);
for (const [c, l] of [[0x07, 'a'], [0x08, 'b'], [0x1b, 'e'], [0x0c, 'f'], [0x0a, 'n'], [0x0d, 'r'], [0x09, 't'], [0x0b, 'v'], [0x20, ' '], [0x5c, '\\']] as const) {
  NAMED[c] = l.charCodeAt(0);
}

/** A binary string (one char per byte) as bytes. */
export const ascii = (s: string): Uint8Array => Uint8Array.from(s, (ch) => ch.charCodeAt(0));

/** print_path_escaped of p[s, e) into `out` from `o` (room for 4 bytes a byte); returns the end. */
export function escapeInto(p: Uint8Array, s: number, e: number, out: Uint8Array, o: number): number {
  for (let i = s; i < e; i++) {
    const c = p[i]!;
    if (PLAIN[c] === 1) {
      out[o++] = c;
      continue;
    }
    out[o++] = 0x5c;
    const l = NAMED[c]!;
    if (l !== 0) {
      out[o++] = l;
    } else {
      out[o++] = 0x30 + (c >> 6);
      out[o++] = 0x30 + ((c >> 3) & 7);
      out[o++] = 0x30 + (c & 7);
    }
  }
  return o;
}

/**
 * The byte side of dump's output (fast-lines.ts): lines written as latin1 bytes into one buffer, which its
 * owner hands on and empties (pos = 0) between lines.
 */
export class LineBuffer {
  buf = new Uint8Array(128 << 10);
  pos = 0;

  /** A line DumpReceiver made (a binary string), in order with the others. */
  appendBinary(line: string): void {
    this.text(line);
  }

  protected bytes(b: Uint8Array): void {
    this.room(b.length);
    const out = this.buf;
    let o = this.pos;
    for (let i = 0; i < b.length; i++) out[o++] = b[i]!;
    this.pos = o;
  }

  /** A binary string: the labels, and DumpReceiver's lines. */
  protected text(s: string): void {
    this.room(s.length);
    const out = this.buf;
    let o = this.pos;
    for (let i = 0; i < s.length; i++) out[o++] = s.charCodeAt(i);
    this.pos = o;
  }

  /** An integer below 2^53 in decimal ("-" first when negative). */
  protected num(n: number): true {
    this.room(24);
    const out = this.buf;
    if (n < 0) {
      out[this.pos++] = 0x2d;
      n = -n;
    }
    let digits = 1;
    for (let t = n; t >= 10; t = Math.floor(t / 10)) digits++;
    const end = this.pos + digits;
    for (let i = end - 1; i >= this.pos; i--) {
      const q = Math.floor(n / 10);
      out[i] = 0x30 + (n - q * 10);
      n = q;
    }
    this.pos = end;
    return true;
  }

  protected octal(n: number): true {
    this.room(24);
    let digits = 1;
    for (let t = n; t >= 8; t = Math.floor(t / 8)) digits++;
    const end = this.pos + digits;
    for (let i = end - 1; i >= this.pos; i--) {
      const q = Math.floor(n / 8);
      this.buf[i] = 0x30 + (n - q * 8);
      n = q;
    }
    this.pos = end;
    return true;
  }

  protected end(): true {
    this.room(1);
    this.buf[this.pos++] = 0x0a;
    return true;
  }

  /** Makes room for `n` more bytes: a line is never split, so the buffer grows for an enormous one. */
  protected room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const to = new Uint8Array(Math.max(2 * this.buf.length, this.pos + n));
    to.set(this.buf.subarray(0, this.pos));
    this.buf = to;
  }
}
