import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFilesystem } from '../src/image/write/create.js';
import { FileDevice } from '../src/io/image-file.js';
import { receiveStreams } from '../src/receive/index.js';
import { parseStream } from '../src/stream/parser.js';
import type { RecyclingSource } from '../src/stream/source.js';
import { showItem } from './helpers/show-item.js';
import { STREAMS, checkImage, stateBySubvol } from './hostile/harness.js';
import { skipReason, tmpDir } from './image-write-helpers.js';

/**
 * Input chunks handed back to a recycling source (receive: PooledFileInput) are overwritten by its next
 * reads. This source overwrites them the moment they come back, in chunks of awkward sizes, so anything
 * still looking at a recycled chunk sees garbage. Oracle: the same stream parsed / received from one
 * plain buffer (no recycling), and btrfs check.
 */
class PoisoningSource implements RecyclingSource {
  recycled = 0;
  private readonly live = new Set<ArrayBufferLike>();

  constructor(private readonly bytes: Uint8Array, private readonly sizes: number[]) {
    // a Buffer's slice() is a view: work on a plain copy so every chunk has a buffer of its own
    this.bytes = new Uint8Array(bytes);
  }

  recycle(chunk: Uint8Array): void {
    // only chunks it gave out, each once
    expect(this.live.delete(chunk.buffer)).toBe(true);
    new Uint8Array(chunk.buffer).fill(0xa5);
    this.recycled++;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    let o = 0;
    for (let i = 0; o < this.bytes.length; i++) {
      const n = Math.min(this.sizes[i % this.sizes.length]!, this.bytes.length - o);
      // a Buffer over a buffer of its own, as PooledFileInput and node streams give (Buffer#slice is a view)
      const own = Uint8Array.prototype.slice.call(this.bytes, o, o + n);
      const c = Buffer.from(own.buffer, own.byteOffset, own.length);
      this.live.add(c.buffer);
      o += n;
      yield c;
    }
  }
}

const SIZES = [512, 100, 4096, 7, 1000, 65536, 300_000];
const STREAM_NAMES = ['full-v1', 'full-v2', 'zstd-v2', 'multi-v1'];

const show = showItem;

describe('parser with reused input chunks', () => {
  for (const name of STREAM_NAMES) {
    it(`${name}: commands kept past the next one are intact; DATA was valid while current`, async () => {
      const bytes = readFileSync(join(STREAMS, `${name}.stream`));
      const expected: string[] = [];
      for await (const item of parseStream([new Uint8Array(bytes)])) expected.push(show(item));
      const src = new PoisoningSource(bytes, SIZES);
      const kept: unknown[] = [];
      const atYield: string[] = [];
      for await (const item of parseStream(src, { reuseInput: true })) {
        atYield.push(show(item));
        kept.push(item);
      }
      expect(src.recycled).toBeGreaterThan(3);
      expect(atYield).toEqual(expected);
      // after the whole parse every chunk but the last few was overwritten: only DATA may have changed
      const noData = (s: string) => s.replace(/"data":"crc:\d+"/g, '');
      expect(kept.map((c) => noData(show(c)))).toEqual(expected.map(noData));
    });
  }

  it('without reuseInput a recycling source gets nothing back', async () => {
    const src = new PoisoningSource(readFileSync(join(STREAMS, 'full-v1.stream')), SIZES);
    for await (const item of parseStream(src)) void item;
    expect(src.recycled).toBe(0);
  });
});

const why = skipReason('progs');
if (why) console.warn(`SKIP receive through a recycling source: ${why}`);

describe.skipIf(!!why)('receive through a recycling source', () => {
  const work = tmpDir('btrfs-ts-recycle-');
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  async function receiveInto(image: string, input: AsyncIterable<Uint8Array> | Uint8Array[]): Promise<void> {
    const dev = FileDevice.create(image, 256n << 20n);
    try {
      await receiveStreams(input, createFilesystem(dev, { growable: true, maxSize: 4n << 30n }));
    } finally {
      dev.close();
    }
  }

  for (const name of STREAM_NAMES) {
    it(`${name}: the same image content as from one plain buffer, btrfs check clean`, async () => {
      const bytes = readFileSync(join(STREAMS, `${name}.stream`));
      const plain = join(work, `${name}-plain.img`);
      const reused = join(work, `${name}-reused.img`);
      await receiveInto(plain, [new Uint8Array(bytes)]);
      const src = new PoisoningSource(bytes, SIZES);
      await receiveInto(reused, src);
      expect(src.recycled).toBeGreaterThan(3);
      expect(checkImage(reused)).toEqual([]);
      expect(await stateBySubvol(reused)).toEqual(await stateBySubvol(plain));
    });
  }
});
