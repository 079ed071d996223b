import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { STREAMS_DIR, storedManifest } from './helpers/streams.js';

describe('library API (the README example)', () => {
  it('receive a stream into an in-memory image, then read it back without mounting', async () => {
    const dev = new lib.MemoryDevice(256n << 20n);
    const fs = lib.createFilesystem(dev, { growable: true });
    const summary = await lib.receiveStreams(createReadStream(join(STREAMS_DIR, 'sample.stream')), fs);
    expect(summary.subvolumes.map((s) => s.name)).toEqual(['sample']);
    expect(summary.plan.byAction['pass-through'].extents).toBeGreaterThan(0);

    const img = await lib.BtrfsImage.open(lib.fromBlockDevice(dev));
    const subvols = await img.listSubvolumes();
    expect(subvols.map((s) => s.path)).toContain('sample');
    const lines: string[] = [];
    for await (const l of lib.formatManifest(lib.imageTreeSource(img, await img.resolve('sample')))) lines.push(l);
    expect(lines).toEqual(storedManifest('sample.manifest'));
  });
});
