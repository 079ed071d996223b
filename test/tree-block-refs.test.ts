import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BTRFS_BLOCK_FLAG_FULL_BACKREF, BTRFS_EXTENT_FLAG_TREE_BLOCK, BTRFS_EXTENT_ITEM_KEY, BTRFS_EXTENT_TREE_OBJECTID, BTRFS_METADATA_ITEM_KEY,
  BTRFS_SHARED_BLOCK_REF_KEY, BTRFS_TREE_BLOCK_REF_KEY,
} from '../src/image/structs/constants.js';
import { decodeExtentItem, encodeExtentItem } from '../src/image/structs/tree-items.js';
import { createFilesystem } from '../src/image/write/create.js';
import type { Filesystem } from '../src/image/write/filesystem.js';
import { treeBlockItemCodec } from '../src/image/write/tree-block-item.js';
import { INLINE_MAX, TreeBlockRefTable } from '../src/image/write/tree-refs.js';
import { FileDevice } from '../src/io/image-file.js';
import { tmpDir } from './image-write-helpers.js';

/**
 * The extent tree items of shared tree blocks as the reference table writes them: up to INLINE_MAX
 * references inline in the kernel's order (type, then decreasing root or parent: the tree checker
 * rejects any other), more as keyed items; a change rewrites only the items that differ, whether the
 * table read the block's items before (it remembers their keys) or not (it looks them up).
 */
const work = tmpDir('btrfs-ts-refs-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const U64_MAX = (1n << 64n) - 1n;
// addresses no block uses: the table only keeps their items, nothing reads the blocks
const X = 1n << 40n;
const P1 = (1n << 40n) + 16384n * 7n;
const P2 = (1n << 40n) + 16384n * 3n;

function setup(): { fs: Filesystem; table: () => TreeBlockRefTable; items: (b: bigint) => { key: { type: number; offset: bigint }; data: Uint8Array }[] } {
  const dev = FileDevice.create(join(work, `r${Math.random().toString(36).slice(2)}.img`), 128n << 20n);
  const fs = createFilesystem(dev, { growable: true });
  const extent = () => fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
  return {
    fs,
    table: () => new TreeBlockRefTable(extent, treeBlockItemCodec(fs.sb)),
    items: (b) => extent().range({ objectid: b, type: BTRFS_EXTENT_ITEM_KEY, offset: 0n }, { objectid: b, type: BTRFS_SHARED_BLOCK_REF_KEY, offset: U64_MAX }),
  };
}

describe('tree block reference items', () => {
  it('inline in the kernel order up to INLINE_MAX, keyed past it, inline again when fewer; items left exactly', () => {
    const { fs, table, items } = setup();
    let t = table();
    t.created(X, 1, fs.transid, 5n, false);
    t.add(X, { root: 300n });
    t.add(X, { root: 257n });
    t.add(X, { parent: P2 });
    t.add(X, { parent: P1 });
    t.run();
    let it = items(X);
    expect(it.map((i) => i.key.type)).toEqual([BTRFS_METADATA_ITEM_KEY]);
    let ei = decodeExtentItem(it[0]!.data, BTRFS_METADATA_ITEM_KEY);
    expect(ei.refs).toBe(5n);
    expect(ei.inline_refs).toEqual([
      { type: BTRFS_TREE_BLOCK_REF_KEY, root: 300n }, { type: BTRFS_TREE_BLOCK_REF_KEY, root: 257n }, { type: BTRFS_TREE_BLOCK_REF_KEY, root: 5n },
      { type: BTRFS_SHARED_BLOCK_REF_KEY, parent: P1 }, { type: BTRFS_SHARED_BLOCK_REF_KEY, parent: P2 },
    ]);

    // past INLINE_MAX: a head without inline references, then one keyed item per reference, in key order
    t = table(); // a table that has not seen the block reads its items first
    const roots = [5n, 257n, 300n];
    for (let i = 0; roots.length + 2 < INLINE_MAX; i++) {
      t.add(X, { root: 1000n + BigInt(i) });
      roots.push(1000n + BigInt(i));
    }
    t.run();
    expect(items(X).length).toBe(1);
    t.add(X, { root: 999n });
    roots.push(999n);
    t.run();
    it = items(X);
    expect(it.length).toBe(1 + roots.length + 2);
    ei = decodeExtentItem(it[0]!.data, BTRFS_METADATA_ITEM_KEY);
    expect(ei.refs).toBe(BigInt(roots.length + 2));
    expect(ei.inline_refs).toEqual([]);
    expect(it.slice(1).map((i) => [i.key.type, i.key.offset])).toEqual([
      ...roots.sort((a, b) => (a < b ? -1 : 1)).map((r) => [BTRFS_TREE_BLOCK_REF_KEY, r]),
      [BTRFS_SHARED_BLOCK_REF_KEY, P2], [BTRFS_SHARED_BLOCK_REF_KEY, P1],
    ]);

    // back to two: the keyed items go, both references inline; the flags are kept
    t = table();
    for (const r of roots) if (r !== 5n && r !== 257n) t.drop(X, { root: r });
    t.drop(X, { parent: P1 });
    t.drop(X, { parent: P2 });
    t.setFullBackref(X);
    t.run();
    it = items(X);
    expect(it.length).toBe(1);
    ei = decodeExtentItem(it[0]!.data, BTRFS_METADATA_ITEM_KEY);
    expect(ei.refs).toBe(2n);
    expect(ei.flags).toBe(BTRFS_EXTENT_FLAG_TREE_BLOCK | BTRFS_BLOCK_FLAG_FULL_BACKREF);
    expect(ei.inline_refs).toEqual([{ type: BTRFS_TREE_BLOCK_REF_KEY, root: 257n }, { type: BTRFS_TREE_BLOCK_REF_KEY, root: 5n }]);

    // none left: no item
    t = table();
    t.drop(X, { root: 5n });
    t.drop(X, { root: 257n });
    t.run();
    expect(items(X)).toEqual([]);
  });

  it('a block whose items the kernel wrote partly inline, partly keyed: read whole, rewritten in one form', () => {
    const { fs, table, items } = setup();
    const extent = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
    const head = { objectid: X, type: BTRFS_METADATA_ITEM_KEY, offset: 0n };
    extent.put(head, encodeExtentItem({ refs: 3n, generation: 1n, flags: BTRFS_EXTENT_FLAG_TREE_BLOCK, inline_refs: [{ type: BTRFS_TREE_BLOCK_REF_KEY, root: 5n }] }));
    extent.put({ objectid: X, type: BTRFS_TREE_BLOCK_REF_KEY, offset: 257n }, new Uint8Array(0));
    extent.put({ objectid: X, type: BTRFS_SHARED_BLOCK_REF_KEY, offset: P1 }, new Uint8Array(0));
    const t = table();
    const r = t.get(X)!;
    expect([...r.roots].sort()).toEqual([257n, 5n].sort());
    expect([...r.parents]).toEqual([P1]);
    t.add(X, { root: 258n });
    t.run();
    const it = items(X);
    expect(it.length).toBe(1);
    const ei = decodeExtentItem(it[0]!.data, BTRFS_METADATA_ITEM_KEY);
    expect(ei.refs).toBe(4n);
    expect(ei.inline_refs).toEqual([
      { type: BTRFS_TREE_BLOCK_REF_KEY, root: 258n }, { type: BTRFS_TREE_BLOCK_REF_KEY, root: 257n }, { type: BTRFS_TREE_BLOCK_REF_KEY, root: 5n },
      { type: BTRFS_SHARED_BLOCK_REF_KEY, parent: P1 },
    ]);
  });

  it('a new state queued for a block the table never read replaces all its items (looked up)', () => {
    const { fs, table, items } = setup();
    const extent = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
    extent.put({ objectid: X, type: BTRFS_METADATA_ITEM_KEY, offset: 0n }, encodeExtentItem({ refs: 2n, generation: 1n, flags: BTRFS_EXTENT_FLAG_TREE_BLOCK, inline_refs: [] }));
    extent.put({ objectid: X, type: BTRFS_TREE_BLOCK_REF_KEY, offset: 5n }, new Uint8Array(0));
    extent.put({ objectid: X, type: BTRFS_TREE_BLOCK_REF_KEY, offset: 257n }, new Uint8Array(0));
    const t = table();
    t.dropOnly(X, 0);
    t.run();
    expect(items(X)).toEqual([]);
    t.put(X, { level: 0, generation: fs.transid, flags: 0n, roots: new Set([7n]), parents: new Set() });
    t.run();
    expect(items(X).map((i) => i.key.type)).toEqual([BTRFS_METADATA_ITEM_KEY]);
  });
});
