import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { STREAMS_DIR, collect, storedManifest } from './helpers/streams.js';

/**
 * Image to image without a kernel: captured streams received into an in-memory image, each subvolume sent
 * again with sendSubvolume and fed straight into receiveStreams on a second image — the tree that arrives
 * is the one the kernel's receive made of the original stream (stored manifests).
 */
async function receiveInto(input: AsyncIterable<Uint8Array> | NodeJS.ReadableStream): Promise<{ dev: lib.MemoryDevice; summary: lib.ReceiveSummary }> {
  const dev = new lib.MemoryDevice(256n << 20n);
  const fs = lib.createFilesystem(dev, { growable: true });
  const summary = await lib.receiveStreams(input as AsyncIterable<Uint8Array>, fs);
  return { dev, summary };
}

async function manifest(dev: lib.MemoryDevice, path: string): Promise<string[]> {
  const img = await lib.BtrfsImage.open(lib.fromBlockDevice(dev));
  return collect(lib.formatManifest(lib.imageTreeSource(img, await img.resolve(path))));
}

let source: lib.BtrfsImage;
beforeAll(async () => {
  const dev = new lib.MemoryDevice(256n << 20n);
  const fs = lib.createFilesystem(dev, { growable: true });
  for (const s of ['full-v1', 'incr-v1', 'zstd-v2', 'lzo-v2']) await lib.receiveStreams(createReadStream(join(STREAMS_DIR, `${s}.stream`)), fs);
  source = await lib.BtrfsImage.open(lib.fromBlockDevice(dev));
});

describe('sendSubvolume feeds receiveStreams directly', () => {
  const cases: { subvol: string; manifest: string; opts: lib.SendOptions }[] = [
    { subvol: 'full', manifest: 'full-v1.manifest', opts: {} },
    { subvol: 'incr', manifest: 'incr-v1.manifest', opts: { proto: 2 } },
    { subvol: 'zstd', manifest: 'zstd-v2.manifest', opts: { compressedData: true } },
    { subvol: 'lzo', manifest: 'lzo-v2.manifest', opts: { compressedData: true } },
  ];
  for (const c of cases) {
    it(`${c.subvol} ${JSON.stringify(c.opts)}`, async () => {
      const { dev, summary } = await receiveInto(lib.sendSubvolume(source, c.subvol, c.opts));
      expect(summary.subvolumes.map((s) => s.name)).toEqual([c.subvol]);
      if (c.opts.compressedData) expect(summary.plan.byAction['pass-through'].extents).toBeGreaterThan(0);
      expect(await manifest(dev, c.subvol)).toEqual(storedManifest(c.manifest));
    });
  }

  it('several subvolumes: complete streams back to back (header … END each), both received', async () => {
    const items = await collect(lib.parseStream(lib.sendSubvolumes(source, ['full', 'zstd'], { proto: 2 })));
    expect(items.filter((i) => i.kind === 'header')).toHaveLength(2);
    expect(items.filter((i) => i.kind === 'command' && i.command.cmd === lib.sendConstants.BTRFS_SEND_C_END)).toHaveLength(2);
    expect(items.filter((i) => i.kind === 'command' && i.command.cmd === lib.sendConstants.BTRFS_SEND_C_SUBVOL)).toHaveLength(2);
    const { dev, summary } = await receiveInto(lib.sendSubvolumes(source, ['full', 'zstd'], { proto: 2 }));
    expect(summary.subvolumes.map((s) => s.name)).toEqual(['full', 'zstd']);
    expect(await manifest(dev, 'zstd')).toEqual(storedManifest('zstd-v2.manifest'));
  });

  it('a consumer giving the buffers back (bufferPool) gets the same bytes: no buffer is refilled while it is held', async () => {
    const plain = Buffer.concat(await collect(lib.sendSubvolumes(source, ['full', 'zstd'], { proto: 2 })));
    // a pool far smaller than some commands: buffers are handed out, given back and refilled many times
    const pool = new lib.BufferPool(4096, 2);
    const copies: Buffer[] = [];
    let held: Uint8Array | undefined;
    let changed = 0;
    for await (const b of lib.sendSubvolumes(source, ['full', 'zstd'], { proto: 2, bufferPool: pool })) {
      copies.push(Buffer.from(b));
      // the one before is given back only now, unchanged: the encoder filled others meanwhile (write-behind)
      if (held) {
        if (!Buffer.from(held).equals(copies[copies.length - 2]!)) changed++;
        pool.give(held);
      }
      held = b;
    }
    expect(changed).toBe(0);
    expect(copies.length).toBeGreaterThan(50);
    expect(Buffer.concat(copies).equals(plain)).toBe(true);
  });

  it('our own dump reads the stream: WRITE pieces of 48 KiB in protocol 1, 128 KiB in 2', async () => {
    for (const [proto, max] of [[1, 48 * 1024], [2, 128 * 1024]] as const) {
      const lines: string[] = [];
      await lib.dumpStream(lib.sendSubvolume(source, 'full', { proto }), (l) => lines.push(l));
      const writes = lines.filter((l) => l.startsWith('write')).map((l) => Number(/len=(\d+)/.exec(l)![1]));
      expect(writes.length).toBeGreaterThan(0);
      expect(Math.max(...writes)).toBe(max);
    }
  });

  it('incremental: the full stream of the parent, then incr -p full, received image to image, give incr', async () => {
    const dev = new lib.MemoryDevice(256n << 20n);
    const fs = lib.createFilesystem(dev, { growable: true });
    await lib.receiveStreams(lib.sendSubvolume(source, 'full'), fs);
    const items = await collect(lib.parseStream(lib.sendSubvolume(source, 'incr', { parent: 'full' })));
    expect(items.some((i) => i.kind === 'command' && i.command.cmd === lib.sendConstants.BTRFS_SEND_C_SNAPSHOT)).toBe(true);
    const summary = await lib.receiveStreams(lib.sendSubvolume(source, 'incr', { parent: 'full' }), fs);
    expect(summary.subvolumes.map((s) => s.name)).toEqual(['incr']);
    expect(await manifest(dev, 'incr')).toEqual(storedManifest('incr-v1.manifest'));
    expect(await manifest(dev, 'full')).toEqual(storedManifest('full-v1.manifest'));
    // --no-data: the changed extents as UPDATE_EXTENT, no file data
    const lines: string[] = [];
    await lib.dumpStream(lib.sendSubvolume(source, 'incr', { parent: 'full', noData: true }), (l) => lines.push(l));
    expect(lines.some((l) => l.startsWith('update_extent'))).toBe(true);
    expect(lines.some((l) => /^(write|encoded_write)/.test(l))).toBe(false);
  });

  it('--no-data sends UPDATE_EXTENT and no file data', async () => {
    const lines: string[] = [];
    await lib.dumpStream(lib.sendSubvolume(source, 'full', { noData: true }), (l) => lines.push(l));
    expect(lines.some((l) => l.startsWith('update_extent'))).toBe(true);
    expect(lines.some((l) => /^(write|encoded_write)/.test(l))).toBe(false);
  });
});

describe('what openImage returns is an image to send from', () => {
  it('a file opened by openImage: its stream received again gives the same tree', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-sendlib-'));
    try {
      const file = join(dir, 'src.img');
      await lib.receiveIntoImage(file, createReadStream(join(STREAMS_DIR, 'full-v1.stream')));
      const img = await lib.openImage(file);
      try {
        const { dev } = await receiveInto(lib.sendSubvolume(img, 'full'));
        expect(await manifest(dev, 'full')).toEqual(storedManifest('full-v1.manifest'));
      } finally {
        await img.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('refusals, before any byte', () => {
  const refused = async (paths: string[], opts: lib.SendOptions): Promise<lib.BtrfsTsError> => {
    // the very first pull fails: nothing was yielded
    const err = await lib.sendSubvolumes(source, paths, opts).next().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(lib.BtrfsTsError);
    return err as lib.BtrfsTsError;
  };

  it('the top level is not a read-only subvolume', async () => {
    expect((await refused([''], {})).code).toBe('SEND_NOT_READONLY');
  });

  it('a path that is no subvolume', async () => {
    expect((await refused(['full/nonexistent'], {})).code).toBe('IMAGE_NO_SUBVOLUME');
  });

  it('an unrelated parent: one error naming both', async () => {
    const e = await refused(['zstd'], { parent: 'full' });
    expect(e.code).toBe('SEND_UNRELATED_PARENT');
    expect(e.message).toMatch(/parent full .* not related to zstd/);
  });

  it('the parent is the subvolume sent: a usage error', async () => {
    expect((await refused(['incr'], { parent: 'incr' })).code).toBe('SEND_USAGE');
  });

  it('--compressed-data with protocol 1', async () => {
    expect((await refused(['zstd'], { proto: 1, compressedData: true })).code).toBe('SEND_USAGE');
  });
});
