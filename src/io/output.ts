/**
 * Buffered stdout for line-heavy output (dumps of millions of commands): lines are copied as bytes into
 * 256 KiB buffers as they come (no array of strings to join), one write per full buffer, and back-pressure
 * respected so memory stays flat when stdout is slow.
 */
export class BufferedOut {
  private buf: Buffer;
  private pos = 0;
  /** Filled buffers (and lines too long for one) waiting for the next flush. */
  private full: Buffer[] = [];

  constructor(private readonly stream: NodeJS.WritableStream = process.stdout, private readonly limit = 256 * 1024) {
    this.buf = Buffer.allocUnsafe(limit);
  }

  /** `line` is a binary string: one char per output byte. */
  push(line: string): void {
    if (this.pos + line.length > this.buf.length) {
      this.retire();
      if (line.length > this.buf.length) {
        this.full.push(Buffer.from(line, 'latin1'));
        return;
      }
    }
    this.pos += this.buf.write(line, this.pos, 'latin1');
  }

  /** Bytes, copied (the caller may reuse its array at once). */
  pushBytes(bytes: Uint8Array): void {
    if (this.pos + bytes.length > this.buf.length) {
      this.retire();
      if (bytes.length > this.buf.length) {
        this.full.push(Buffer.from(bytes));
        return;
      }
    }
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  async flush(): Promise<void> {
    this.retire();
    const parts = this.full;
    if (parts.length === 0) return;
    this.full = [];
    let ok = true;
    for (const p of parts) ok = this.stream.write(p);
    if (!ok) await new Promise<void>((resolve) => this.stream.once('drain', resolve));
  }

  /** Flushes once a buffer is full; undefined (nothing to await) otherwise, the common case. */
  maybeFlush(): Promise<void> | undefined {
    return this.full.length > 0 || this.pos >= this.limit ? this.flush() : undefined;
  }

  /** The current buffer joins the full ones (the stream may keep it until written), a fresh one replaces it. */
  private retire(): void {
    if (this.pos === 0) return;
    this.full.push(this.buf.subarray(0, this.pos));
    this.buf = Buffer.allocUnsafe(this.limit);
    this.pos = 0;
  }
}
