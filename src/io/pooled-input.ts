import type { FileHandle } from 'node:fs/promises';
import type { RecyclingSource } from '../stream/source.js';

/**
 * Reads a file in fixed-size chunks, one read ahead of the consumer, like fs.ReadStream — but chunks the
 * consumer hands back (recycle) are filled again instead of allocating a new one per read. A receive of
 * a 1 GiB stream otherwise allocates 1 GiB of chunks, and that allocation volume alone made V8 run a
 * full GC every ~15 MiB read. A consumer that never recycles gets a fresh chunk per read, as before.
 */
export class PooledFileInput implements RecyclingSource {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly fh: FileHandle,
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
      await this.fh.close();
    }
  }

  private readNext(): Promise<Buffer> {
    const buf = this.free.pop() ?? Buffer.allocUnsafeSlow(this.chunkSize);
    const p = this.fh.read(buf, 0, buf.length, null).then(({ bytesRead }) => buf.subarray(0, bytesRead));
    // a failed read-ahead is reported when its chunk is awaited, not as an unhandled rejection meanwhile
    p.catch(() => undefined);
    return p;
  }
}
