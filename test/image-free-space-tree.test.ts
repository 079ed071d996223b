import * as fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_ITEM_KEY, BTRFS_EXTENT_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_FREE_SPACE_BITMAP_KEY,
  BTRFS_FREE_SPACE_EXTENT_KEY, BTRFS_FREE_SPACE_INFO_KEY, BTRFS_FREE_SPACE_TREE_OBJECTID, BTRFS_FREE_SPACE_USING_BITMAPS, BTRFS_FS_TREE_OBJECTID,
  BTRFS_METADATA_ITEM_KEY,
} from '../src/image/structs/constants.js';
import { decodeBlockGroupItem, decodeFreeSpaceInfo, encodeFreeSpaceInfo } from '../src/image/structs/tree-items.js';
import { createFilesystem } from '../src/image/write/create.js';
import { dropFileExtents, writeDataExtent } from '../src/image/write/file-data.js';
import type { Filesystem } from '../src/image/write/filesystem.js';
import { loadFreeRanges } from '../src/image/write/free-space-tree.js';
import { createInode, linkInode, unlinkEntry, updateInode } from '../src/image/write/inode.js';
import { openFilesystem } from '../src/image/write/open.js';
import { RangeSet } from '../src/image/write/ranges.js';
import { FileDevice } from '../src/io/image-file.js';
import { btrfsCheck, checkProblems, skipReason, tmpDir } from './image-write-helpers.js';

const work = tmpDir('btrfs-ts-fst-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const U64_MAX = (1n << 64n) - 1n;
const progsSkip = skipReason('progs');
if (progsSkip) console.warn(`free space tree tests: ${progsSkip}`);

function expectClean(image: string): void {
  const { status, output } = btrfsCheck(image);
  expect(checkProblems(output), output).toEqual([]);
  expect(status, output).toBe(0);
}

/**
 * The free space tree and block group items against the extent tree, block group by block group: free =
 * the block group minus every extent and tree block in it; used = their total.
 */
function expectFreeSpaceMatchesExtents(f: Filesystem): void {
  const ext = f.tree(BTRFS_EXTENT_TREE_OBJECTID);
  for (const c of f.chunks.all()) {
    const end = c.logical + c.length;
    const used = new RangeSet();
    for (const it of ext.entries({ objectid: c.logical, type: 0, offset: 0n }, { objectid: end - 1n, type: 255, offset: U64_MAX })) {
      if (it.key.type === BTRFS_EXTENT_ITEM_KEY) used.add(it.key.objectid, it.key.objectid + it.key.offset);
      else if (it.key.type === BTRFS_METADATA_ITEM_KEY) used.add(it.key.objectid, it.key.objectid + BigInt(f.nodesize));
    }
    const expected = RangeSet.of([[c.logical, end]]);
    for (const [s, e] of used) expected.remove(s, e);
    const got = loadFreeRanges(f.tree(BTRFS_FREE_SPACE_TREE_OBJECTID), c, f.sectorsize)!;
    expect([...got], `free space of block group ${c.logical}`).toEqual([...expected]);
    const bg = decodeBlockGroupItem(ext.get({ objectid: c.logical, type: BTRFS_BLOCK_GROUP_ITEM_KEY, offset: c.length })!);
    expect(bg.used, `used of block group ${c.logical}`).toBe(used.total());
  }
}

/** Rewrite a block group's free space as bitmaps (what the kernel does past its extent count threshold). */
function toBitmaps(f: Filesystem, c: { logical: bigint; length: bigint }): void {
  const fst = f.tree(BTRFS_FREE_SPACE_TREE_OBJECTID);
  const free = loadFreeRanges(fst, c, f.sectorsize)!;
  const end = c.logical + c.length;
  for (const it of fst.range({ objectid: c.logical, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: 0n }, { objectid: end - 1n, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: U64_MAX })) {
    if (it.key.type === BTRFS_FREE_SPACE_EXTENT_KEY) fst.delete(it.key);
  }
  const ss = BigInt(f.sectorsize);
  const span = 256n * 8n * ss; // BTRFS_FREE_SPACE_BITMAP_BITS sectors per item
  for (let s = c.logical; s < end; s += span) {
    const len = end - s < span ? end - s : span;
    const bits = new Uint8Array(Number((len / ss + 7n) / 8n));
    for (const [a, b] of free.slice(s, s + len)) {
      for (let x = a; x < b; x += ss) {
        const i = Number((x - s) / ss);
        bits[i >> 3]! |= 1 << (i & 7);
      }
    }
    fst.put({ objectid: s, type: BTRFS_FREE_SPACE_BITMAP_KEY, offset: len }, bits);
  }
  const key = { objectid: c.logical, type: BTRFS_FREE_SPACE_INFO_KEY, offset: c.length };
  const info = decodeFreeSpaceInfo(fst.get(key)!);
  fst.put(key, encodeFreeSpaceInfo({ extent_count: free.count, flags: info.flags | BTRFS_FREE_SPACE_USING_BITMAPS }));
}

describe.skipIf(!!progsSkip)('free space tree and block group usage, changed in place by each commit', () => {
  it('follows allocations and frees (extents and bitmaps), and opening does not read the extent tree', async () => {
    const img = path.join(work, 'fst.img');
    const dev = FileDevice.create(img, 256n << 20n);
    const f = createFilesystem(dev, { nodesize: 4096, now: { sec: 1n, nsec: 0 } });
    const root = BTRFS_FS_TREE_OBJECTID;
    const inos: bigint[] = [];
    for (let i = 0; i < 120; i++) {
      const ino = createInode(f, root, { mode: 0o100644 });
      const data = new Uint8Array(8192 + (i % 3) * 4096).fill(i);
      writeDataExtent(f, root, ino, 0n, data);
      updateInode(f, root, ino, { size: BigInt(data.length) });
      linkInode(f, root, 256n, enc(`f${i}`), ino);
      inos.push(ino);
    }
    f.commit();
    expectFreeSpaceMatchesExtents(f);
    const data = f.chunks.all().find((c) => c.type & BTRFS_BLOCK_GROUP_DATA)!;
    toBitmaps(f, data);
    f.commit();
    dev.close();
    expectClean(img); // btrfs check reads the bitmaps

    const dev2 = FileDevice.open(img);
    const g = await openFilesystem(dev2);
    // opening reads the chunk tree, the root tree's root items, the metadata block groups' free space and
    // the chunks' block group items (the extent tree's leaves holding them, checkBlockGroups), nothing else
    for (const [id, t] of g.trees) if (id !== 1n && id !== 2n && id !== 3n && id !== 10n) expect(t.loaded, `tree ${id} read at open`).toBe(false);
    const extentHeight = g.trees.get(2n)!.engine.root.level + 1;
    expect(g.store.reads).toBeLessThanOrEqual(6 + extentHeight + g.chunks.all().length);
    // every other file goes: its extent is freed into a block group kept in bitmaps
    for (let i = 0; i < inos.length; i += 2) {
      const gone = unlinkEntry(g, root, 256n, enc(`f${i}`));
      dropFileExtents(g, root, gone.location.objectid, 0n);
      for (const it of g.tree(root).range({ objectid: gone.location.objectid, type: 0, offset: 0n }, { objectid: gone.location.objectid, type: 255, offset: U64_MAX })) g.tree(root).delete(it.key);
    }
    g.commit();
    const info = decodeFreeSpaceInfo(g.tree(BTRFS_FREE_SPACE_TREE_OBJECTID).get({ objectid: data.logical, type: BTRFS_FREE_SPACE_INFO_KEY, offset: data.length })!);
    expect(info.flags & BTRFS_FREE_SPACE_USING_BITMAPS).toBe(0);
    expect(info.extent_count).toBeGreaterThan(30); // the freed holes, each its own extent
    expectFreeSpaceMatchesExtents(g);
    // the holes are reused once the commit that freed them is durable
    const reused = g.allocData(8192n);
    expect(reused).toBeLessThan(data.logical + 120n * 16384n);
    g.releaseData(reused, 8192n);
    g.commit();
    dev2.close();
    expectClean(img);
  });
});
