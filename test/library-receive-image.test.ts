import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { mount, skipReason } from './image-write-helpers.js';
import { skipReason as announceSkip } from './helpers/oracle.js';
import { STREAMS_DIR, storedManifest } from './helpers/streams.js';

/**
 * receiveIntoImage: what `btrfs-ts receive IMAGE` guarantees, for a program: a missing image is made, a
 * failure leaves the image byte for byte as it was (a new one removed), one writer at a time, no receive
 * into an image the kernel has mounted.
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-receive-image-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const stream = (n: string) => [readFileSync(join(STREAMS_DIR, `${n}.stream`))];
const hash = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

describe('receiveIntoImage', () => {
  it('makes a missing image, receives into it again; the tree is the kernel\'s', async () => {
    const img = join(work, 'a.img');
    const first = await lib.receiveIntoImage(img, stream('full-v1'));
    expect(first.created).toBe(true);
    expect(first.subvolumes.map((s) => s.name)).toEqual(['full']);
    const second = await lib.receiveIntoImage(img, stream('incr-v1'));
    expect(second.created).toBe(false);
    expect(second.subvolumes.map((s) => s.name)).toEqual(['incr']);
    await using r = await lib.openImage(img);
    const lines: string[] = [];
    for await (const l of lib.formatManifest(lib.imageTreeSource(r.image, await r.image.resolve('incr')))) lines.push(l);
    expect(lines).toEqual(storedManifest('incr-v1.manifest'));
    expect(readdirSync(work).filter((n) => n.includes('.lock'))).toEqual([]);
  });

  it('a failed receive leaves an existing image byte for byte as it was, and no new image behind', async () => {
    const img = join(work, 'b.img');
    await lib.receiveIntoImage(img, stream('clone-src-v1'));
    const before = hash(img);
    const full = stream('full-v1')[0]!;
    const cut = full.subarray(0, full.length - 1000);
    await expect(lib.receiveIntoImage(img, [cut])).rejects.toBeInstanceOf(lib.BtrfsTsError);
    expect(hash(img)).toBe(before);
    const fresh = join(work, 'c.img');
    await expect(lib.receiveIntoImage(fresh, [cut])).rejects.toBeInstanceOf(lib.BtrfsTsError);
    expect(existsSync(fresh)).toBe(false);
    expect(readdirSync(work).filter((n) => n.includes('.lock'))).toEqual([]);
  });

  it('one writer at a time: a live process\'s lock is refused, the image untouched', async () => {
    const img = join(work, 'd.img');
    await lib.receiveIntoImage(img, stream('multi-v1'));
    const before = hash(img);
    writeFileSync(`${img}.btrfs-ts.lock`, `${process.pid}\n`);
    try {
      await expect(lib.receiveIntoImage(img, stream('full-v1'))).rejects.toThrow(/is being written by process/);
    } finally {
      rmSync(`${img}.btrfs-ts.lock`);
    }
    expect(hash(img)).toBe(before);
  });

  const why = skipReason('mount');
  if (why) announceSkip('receiveIntoImage mounted-image refusal', why);
  it.skipIf(why !== undefined)('an image the kernel has mounted is refused', async () => {
    const img = join(work, 'e.img');
    await lib.receiveIntoImage(img, stream('sample'));
    const m = mount(img);
    try {
      await expect(lib.receiveIntoImage(img, stream('full-v1'))).rejects.toThrow(/mounted/);
    } finally {
      m.umount();
    }
  });
});
