import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { treeBlocks } from '../src/image/engine/bulk.js';
import {
  BTRFS_CHUNK_TREE_OBJECTID, BTRFS_EXTENT_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_METADATA_ITEM_KEY, BTRFS_ROOT_TREE_OBJECTID,
  BTRFS_SHARED_BLOCK_REF_KEY, BTRFS_TREE_BLOCK_REF_KEY,
} from '../src/image/structs/constants.js';
import { decodeExtentItem } from '../src/image/structs/tree-items.js';
import { createFilesystem } from '../src/image/write/create.js';
import { deleteInode, writeDataExtent } from '../src/image/write/file-data.js';
import type { Filesystem } from '../src/image/write/filesystem.js';
import { createInode, linkInode, removeXattr, setXattr, unlinkEntry, updateInode } from '../src/image/write/inode.js';
import { openFilesystem } from '../src/image/write/open.js';
import { FileDevice } from '../src/io/image-file.js';
import { snapshotSubvolume } from '../src/receive/snapshot.js';
import { btrfsCheck, checkProblems, skipReason, tmpDir } from './image-write-helpers.js';

const work = tmpDir('btrfs-ts-cow-');
afterAll(() => rmSync(work, { recursive: true, force: true }));
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function blocksOf(fs: Filesystem, id: bigint): Set<bigint> {
  return new Set(treeBlocks(fs.trees.get(id)!.engine!).map((b) => b.bytenr));
}

/**
 * Every tree's ROOT_ITEM bytes_used is its number of blocks (counting shared ones) times nodesize: the
 * commit keeps it from the blocks each tree made and let go, as the kernel does, without walking the tree.
 */
function expectBytesUsed(fs: Filesystem, when: string): void {
  let n = 0;
  for (const [id, t] of fs.trees) {
    if (id === BTRFS_ROOT_TREE_OBJECTID || id === BTRFS_CHUNK_TREE_OBJECTID) continue; // in the superblock
    const key = fs.rootItemKey(id);
    if (!key) continue;
    const item = fs.tree(BTRFS_ROOT_TREE_OBJECTID).get(key)!;
    const used = new DataView(item.buffer, item.byteOffset, item.byteLength).getBigUint64(192, true);
    expect(used, `${when}: bytes_used of tree ${id}`).toBe(BigInt(treeBlocks(t.engine!).length * fs.nodesize));
    n++;
  }
  expect(n).toBeGreaterThan(3);
}

/** Files with data and xattrs in tree 5: enough items for a tree of two levels. */
function populate(fs: Filesystem, n: number, from = 0): void {
  for (let i = from; i < from + n; i++) {
    const ino = createInode(fs, 5n, { mode: 0o100644 });
    linkInode(fs, 5n, 256n, enc(`file-${i}`), ino);
    setXattr(fs, 5n, ino, enc('user.k'), enc(`value ${i}`.repeat(4)));
    const data = new Uint8Array(8192).fill(i & 255);
    writeDataExtent(fs, 5n, ino, 0n, data);
    updateInode(fs, 5n, ino, { size: 8192n });
  }
}

describe.skipIf(skipReason('progs'))('snapshots share tree blocks (btrfs_copy_root)', () => {
  it('a snapshot shares every block below its root; a change copies one path; btrfs check agrees on the references, also after reopening', async () => {
    const img = join(work, 'snap.img');
    let dev = FileDevice.create(img, 256n << 20n);
    let fs = createFilesystem(dev, { growable: true });
    populate(fs, 1500);
    fs.commit();
    expectBytesUsed(fs, 'after populating');
    expect(fs.trees.get(5n)!.engine!.root.level).toBeGreaterThan(0);
    const src = blocksOf(fs, 5n);

    const snap = snapshotSubvolume(fs, 5n, { parentRoot: 5n, parentDir: 256n, name: enc('snap') });
    fs.commit();
    expectBytesUsed(fs, 'after the snapshot');
    const shared = blocksOf(fs, snap);
    const now = blocksOf(fs, 5n);
    // the snapshot's root is its own; linking it into tree 5 copied the paths to dir 256's inode item, its
    // new DIR_ITEM and DIR_INDEX (three leaves at most, plus one a split may add, under one root)
    const level = fs.trees.get(5n)!.engine!.root.level;
    expect([...shared].filter((b) => !now.has(b) && !src.has(b)).length).toBe(1);
    expect([...now].filter((b) => !src.has(b)).length).toBeLessThanOrEqual(1 + 3 * level + 1);

    // blocks referenced by both trees carry both references, inline in the head item in the kernel's order
    const extent = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
    const both = [...shared].filter((b) => now.has(b));
    expect(both.length).toBeGreaterThan(10);
    for (const b of both.slice(0, 20)) {
      const items = extent.range({ objectid: b, type: BTRFS_EXTENT_ITEM_KEY, offset: 0n }, { objectid: b, type: BTRFS_SHARED_BLOCK_REF_KEY, offset: (1n << 64n) - 1n });
      expect(items.map((it) => it.key.type)).toEqual([BTRFS_METADATA_ITEM_KEY]);
      const ei = decodeExtentItem(items[0]!.data, BTRFS_METADATA_ITEM_KEY);
      expect(ei.refs).toBe(2n);
      expect(ei.inline_refs).toEqual([{ type: BTRFS_TREE_BLOCK_REF_KEY, root: snap }, { type: BTRFS_TREE_BLOCK_REF_KEY, root: 5n }]);
    }

    // a change in the snapshot copies the path to it (and gives the old blocks full back references)
    linkInode(fs, snap, 256n, enc('new-in-snap'), createInode(fs, snap, { mode: 0o100600 }));
    setXattr(fs, snap, 300n, enc('user.k'), enc('changed'));
    fs.commit();
    dev.close();
    let r = btrfsCheck(img);
    expect(checkProblems(r.output), r.output).toEqual([]);
    expect(r.status, r.output).toBe(0);

    // reopened: the shared trees stay on disk; changes to tree 5 now COW blocks the snapshot shares
    dev = FileDevice.open(img);
    fs = await openFilesystem(dev, { growable: true });
    expect(fs.trees.get(snap)!.loaded).toBe(false);
    for (let i = 0; i < 1500; i += 97) setXattr(fs, 5n, 257n + BigInt(i), enc('user.k'), enc(`again ${i}`));
    const snap2 = snapshotSubvolume(fs, snap, { parentRoot: 5n, parentDir: 256n, name: enc('snap2') });
    setXattr(fs, snap2, 260n, enc('user.other'), enc('in snap2 only'));
    fs.commit();
    expectBytesUsed(fs, 'after the second snapshot');
    dev.close();
    r = btrfsCheck(img);
    expect(checkProblems(r.output), r.output).toEqual([]);
    expect(r.status, r.output).toBe(0);
    // some block of the image is referenced by three trees' worth of paths or by a parent block
    let multi = 0;
    dev = FileDevice.open(img);
    fs = await openFilesystem(dev, { growable: true });
    for (const it of fs.tree(BTRFS_EXTENT_TREE_OBJECTID).entries()) if (it.key.type === BTRFS_METADATA_ITEM_KEY && new DataView(it.data.buffer, it.data.byteOffset).getBigUint64(0, true) > 1n) multi++;
    dev.close();
    expect(multi).toBeGreaterThan(10);
  });

  it("bytes_used follows splits, merges and snapshots taken before the source's changes are committed; btrfs check clean", async () => {
    const img = join(work, 'used.img');
    let dev = FileDevice.create(img, 256n << 20n);
    let fs = createFilesystem(dev, { growable: true });
    populate(fs, 600);
    // snapshot of a tree changed in this transaction (its count not yet in its ROOT_ITEM), then more changes
    const snap = snapshotSubvolume(fs, 5n, { parentRoot: 5n, parentDir: 256n, name: enc('early') });
    populate(fs, 900, 600);
    fs.commit();
    expectBytesUsed(fs, 'snapshot within the transaction');
    expect(fs.trees.get(5n)!.engine!.root.level).toBeGreaterThan(0);
    dev.close();
    dev = FileDevice.open(img);
    fs = await openFilesystem(dev, { growable: true });
    // every file of the snapshot goes: leaves empty and merge, the tree loses its levels
    for (let i = 0; i < 600; i++) {
      unlinkEntry(fs, snap, 256n, enc(`file-${i}`));
      deleteInode(fs, snap, 257n + BigInt(i));
      if (i % 3) removeXattr(fs, 5n, 257n + BigInt(i), enc('user.k'));
    }
    fs.commit();
    expectBytesUsed(fs, 'after deletions in both trees');
    expect(fs.trees.get(snap)!.engine!.root.level).toBe(0);
    dev.close();
    const r = btrfsCheck(img);
    expect(checkProblems(r.output), r.output).toEqual([]);
    expect(r.status, r.output).toBe(0);
  });
});
