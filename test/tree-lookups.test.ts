import * as fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { BtrfsImage } from '../src/image/read/index.js';
import type { TreeRoot } from '../src/image/read/tree.js';
import { withImageFile } from '../src/io/image-read-file.js';
import { type BtrfsKey, compareKeys, formatKey, type LeafItem } from '../src/image/structs.js';
import { tmpDir } from './image-write-helpers.js';

/**
 * TreeReader's searches against a plain walk of every item: lookupLE (whose leaf search answers from the
 * leaf the last search of that tree ended in, when the key lies between that leaf's first key and the next
 * leaf's) and shortRange (a range read from one leaf where it can be, else walked), on a three-level tree, with keys asked in random order
 * so that each search follows another anywhere in the tree.
 */
const work = tmpDir('btrfs-ts-lookups-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A small deterministic generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

const near = (k: BtrfsKey, d: bigint): BtrfsKey => ({ ...k, offset: k.offset + d < 0n ? 0n : k.offset + d });
const show = (it: LeafItem | undefined): string => (it ? `${formatKey(it.key)} ${Buffer.from(it.data).toString('hex')}` : '-');

describe('tree lookups from the last leaf', () => {
  it('lookupLE and shortRange give what a walk of every item gives, in any order', async () => {
    const root = path.join(work, 'root');
    fs.mkdirSync(root);
    // 4 KiB nodes and ~1,500 files: an fs tree of three levels and a few hundred leaves
    for (let i = 0; i < 1500; i++) fs.writeFileSync(path.join(root, `f${i}-${'x'.repeat(i % 40)}`), i % 3 ? '' : `data ${i}`);
    const img = path.join(work, 'img');
    expect(await main(['node', 'btrfs-ts', 'mkfs', '-q', '-n', '4096', '--rootdir', root, img])).toBe(0);
    await withImageFile(img, async (src) => {
      const image = await BtrfsImage.open(src);
      const trees = image.reader.trees;
      const tree: TreeRoot = await image.reader.tree(5n);
      expect(tree.level).toBeGreaterThanOrEqual(2);
      const all: LeafItem[] = [];
      for await (const it of trees.iterate(tree, { objectid: 0n, type: 0, offset: 0n }, { objectid: (1n << 64n) - 1n, type: 255, offset: (1n << 64n) - 1n })) all.push(it);
      expect(all.length).toBeGreaterThan(4 * 1500);
      const lastLE = (k: BtrfsKey): LeafItem | undefined => {
        let lo = 0;
        let hi = all.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (compareKeys(all[mid]!.key, k) <= 0) lo = mid + 1;
          else hi = mid;
        }
        return all[lo - 1];
      };
      const rand = rng(20261127);
      // every item's key, the keys just before and after it, and keys before the first and after the last
      const probes: BtrfsKey[] = [{ objectid: 0n, type: 0, offset: 0n }, { objectid: (1n << 64n) - 1n, type: 255, offset: (1n << 64n) - 1n }];
      for (const it of all) probes.push(it.key, near(it.key, -1n), near(it.key, 1n));
      for (let i = probes.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [probes[i], probes[j]] = [probes[j]!, probes[i]!];
      }
      let wrong = 0;
      for (const k of probes) {
        const got = await trees.lookupLE(tree, k);
        if (show(got) !== show(lastLE(k))) wrong++;
      }
      expect(wrong).toBe(0);
      // ranges from one key to another up to 40 items on: shortRange's items are the walk's, read from one
      // leaf (an array) or walked
      let answered = 0;
      for (let n = 0; n < 3000; n++) {
        const a = Math.floor(rand() * all.length);
        const b = Math.min(all.length - 1, a + Math.floor(rand() * 40));
        const from = near(all[a]!.key, rand() < 0.5 ? -1n : 0n);
        const to = all[b]!.key;
        const range = await trees.shortRange(tree, from, to);
        if (Array.isArray(range)) answered++;
        const got: LeafItem[] = [];
        for await (const it of range) got.push(it);
        const want = all.filter((it) => compareKeys(it.key, from) >= 0 && compareKeys(it.key, to) <= 0);
        expect(got.map(show)).toEqual(want.map(show));
      }
      // most ranges of a few items lie in one leaf; the others were walked
      expect(answered).toBeGreaterThan(1000);
      expect(answered).toBeLessThan(3000);
    }, { blocking: true });
  });
});
