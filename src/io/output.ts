/**
 * Buffered stdout for line-heavy output (dumps of millions of commands): one write per ~256 KiB instead of
 * one per line, and respect for back-pressure so memory stays flat when stdout is slow.
 */
export class BufferedOut {
  private parts: string[] = [];
  private size = 0;

  constructor(private readonly stream: NodeJS.WritableStream = process.stdout, private readonly limit = 256 * 1024) {}

  /** `line` is a binary string: one char per output byte. */
  push(line: string): void {
    this.parts.push(line);
    this.size += line.length;
  }

  get pending(): number {
    return this.size;
  }

  async flush(): Promise<void> {
    if (this.size === 0) return;
    const buf = Buffer.from(this.parts.join(''), 'latin1');
    this.parts = [];
    this.size = 0;
    if (!this.stream.write(buf)) {
      await new Promise<void>((resolve) => this.stream.once('drain', resolve));
    }
  }

  async maybeFlush(): Promise<void> {
    if (this.size >= this.limit) await this.flush();
  }
}
