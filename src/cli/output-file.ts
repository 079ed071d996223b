import { once } from 'node:events';
import { open, rm } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { removeOnInterrupt } from './interrupt.js';

/**
 * A file a command writes its output to (`convert -o`, `manifest -o`): opened before any work, so a path
 * that cannot be written fails first; a failed write is thrown at the next write or at the end, named by
 * the path (before: an unhandled 'error' event and a stack trace from manifest, and status 0 from convert
 * when the last writes failed); a half-written regular file is removed at a failure or Ctrl-C — never
 * anything else (`-o /dev/null` or a FIFO must not lose its device node).
 */
export class OutputFile {
  private failure: Error | undefined;
  private readonly release: () => void;

  private constructor(readonly path: string, private readonly stream: Writable, readonly regular: boolean, what: string) {
    stream.on('error', (e: Error) => { this.failure ??= Object.assign(e, { path }); });
    this.release = regular ? removeOnInterrupt(path, what) : () => undefined;
  }

  /** `mode` for a file it makes (an existing one keeps its own, as with O_TRUNC). */
  static async open(path: string, what: string, mode = 0o666): Promise<OutputFile> {
    const fh = await open(path, 'w', mode);
    const regular = (await fh.stat()).isFile();
    return new OutputFile(path, fh.createWriteStream(), regular, what);
  }

  async write(chunk: Uint8Array | string): Promise<void> {
    if (this.failure) throw this.failure;
    // once() rejects with the stream's error should it come instead of 'drain'
    if (!this.stream.write(chunk)) await once(this.stream, 'drain');
  }

  /** Ends the file; `done` false (the command failed) or a write that failed removes a regular one. */
  async close(done: boolean): Promise<void> {
    try {
      this.stream.end();
      // (finished: the stream may have closed already, destroyed by a failed write)
      await finished(this.stream).catch(() => undefined);
      if ((!done || this.failure) && this.regular) await rm(this.path, { force: true });
    } finally {
      this.release();
    }
    if (done && this.failure) throw this.failure;
  }
}
