import { close, read } from 'node:fs';
import type { RecyclingSource } from '../stream/source.js';

/** close(2) of `fd` on the pool, as a promise (a FileHandle's close without node:fs/promises). */
export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => close(fd, (e) => (e ? reject(e) : resolve())));
}

/**
 * Reads a file in fixed-size chunks, one read ahead of the consumer, like fs.ReadStream — but chunks the
 * consumer hands back (recycle) are filled again instead of allocating a new one per read. A receive of
 * a 1 GiB stream otherwise allocates 1 GiB of chunks, and that allocation volume alone made V8 run a
 * full GC every ~15 MiB read. A consumer that never recycles gets a fresh chunk per read, as before.
 */
export class PooledFileInput implements RecyclingSource {
  private readonly free: Buffer[] = [];

  constructor(
    /** The file, read from its current offset on; closed when the iteration ends. */
    private readonly fd: number,
    private readonly chunkSize = 1 << 20,
    private readonly maxFree = 4,
    /** Told the size of every chunk as the consumer takes it (progress). */
    private readonly onChunk?: (bytes: number) => void,
  ) {}

  recycle(chunk: Uint8Array): void {
    // only whole chunks of ours (a view of the last, short read still spans its whole buffer)
    if (chunk.buffer.byteLength !== this.chunkSize || this.free.length >= this.maxFree) return;
    const b = Buffer.from(chunk.buffer, 0, this.chunkSize);
    if (!this.free.some((f) => f.buffer === b.buffer)) this.free.push(b);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    let ahead: Promise<Buffer> | undefined;
    try {
      ahead = this.readNext();
      for (;;) {
        const chunk = await ahead;
        ahead = undefined;
        if (chunk.length === 0) return;
        ahead = this.readNext();
        this.onChunk?.(chunk.length);
        yield chunk;
      }
    } finally {
      // a read still in flight must finish before its file is closed; its error no longer matters
      if (ahead) await ahead.catch(() => undefined);
      await closeFd(this.fd);
    }
  }

  private readNext(): Promise<Buffer> {
    const buf = this.free.pop() ?? Buffer.allocUnsafeSlow(this.chunkSize);
    const p = new Promise<Buffer>((resolve, reject) => read(this.fd, buf, 0, buf.length, null, (e, n) => (e ? reject(e) : resolve(buf.subarray(0, n)))));
    // a failed read-ahead is reported when its chunk is awaited, not as an unhandled rejection meanwhile
    p.catch(() => undefined);
    return p;
  }
}
