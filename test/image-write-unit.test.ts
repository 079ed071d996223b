import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../src/image/device.js';
import { BTRFS_CSUM_TREE_OBJECTID, BTRFS_EXTENT_CSUM_KEY, BTRFS_EXTENT_CSUM_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID } from '../src/image/structs/constants.js';
import { createFilesystem } from '../src/image/write/create.js';
import { addDataCsums, addDataExtent, addDataRef, addNewDataExtent, deleteCsums, dropDataRef, getDataExtent, hashExtentDataRef, maxCsumsPerItem, normalizeCsumTree } from '../src/image/write/extents.js';
import { insertFileExtent } from '../src/image/write/file-data.js';
import { RangeSet } from '../src/image/write/ranges.js';

describe('RangeSet', () => {
  it('adds, coalesces, removes and finds aligned free space', () => {
    const r = RangeSet.of([[0n, 10n], [20n, 30n]]);
    r.add(10n, 20n);
    expect([...r]).toEqual([[0n, 30n]]);
    r.remove(5n, 7n);
    expect([...r]).toEqual([[0n, 5n], [7n, 30n]]);
    expect(r.findFree(8n, 8n)).toBe(8n);
    expect(r.findFree(100n, 1n)).toBeUndefined();
    expect(r.total()).toBe(28n);
  });
});

describe('data extent refs and csums', () => {
  it('hashes extent data refs like the kernel (keys read from a kernel-written image)', () => {
    // from `dump-tree -t extent` after 60 kernel reflinks of one extent (keyed refs beyond the inline ones)
    expect(hashExtentDataRef(5n, 314n, 0n)).toBe(1007496931468551167n);
    expect(hashExtentDataRef(5n, 297n, 0n)).toBe(1007496931555208115n);
    expect(hashExtentDataRef(5n, 313n, 0n)).toBe(1007496931787850508n);
  });

  it('counts references inline for one owner, keyed for several, and frees at zero', () => {
    const fs = createFilesystem(new MemoryDevice(256n << 20n), { now: { sec: 1n, nsec: 0 } });
    const b = fs.allocData(8192n);
    addDataExtent(fs, b, 8192n, 5n, 257n, 0n);
    addDataRef(fs, b, 5n, 257n, 0n);
    expect(getDataExtent(fs, b)!.refs).toEqual([{ root: 5n, objectid: 257n, offset: 0n, count: 2 }]);
    addDataRef(fs, b, 5n, 300n, 4096n);
    const ext = fs.tree(BTRFS_EXTENT_TREE_OBJECTID).range({ objectid: b, type: 0, offset: 0n }, { objectid: b, type: 255, offset: (1n << 64n) - 1n });
    expect(ext.map((i) => i.key.type).filter((t) => t !== 192)).toEqual([168, 178, 178]);
    expect(dropDataRef(fs, b, 5n, 257n, 0n, 2)).toBe(false);
    expect(dropDataRef(fs, b, 5n, 300n, 4096n)).toBe(true);
    expect(getDataExtent(fs, b)).toBeUndefined();
    expect(fs.pinned.contains(b, b + 8192n)).toBe(true);
  });

  it('a freshly allocated extent goes in with one insert, the same items as the general path; an existing one is refused', () => {
    const fs = createFilesystem(new MemoryDevice(256n << 20n), { now: { sec: 1n, nsec: 0 } });
    const b1 = fs.allocData(8192n);
    const b2 = fs.allocData(8192n);
    addDataExtent(fs, b1, 8192n, 5n, 257n, 0n, 2);
    addNewDataExtent(fs, b2, 8192n, 5n, 257n, 0n, 2);
    const t = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
    const items = (b: bigint) => t.range({ objectid: b, type: 0, offset: 0n }, { objectid: b, type: 255, offset: (1n << 64n) - 1n }).filter((i) => i.key.type !== 192);
    expect(items(b2).map((i) => [i.key.type, i.key.offset, Buffer.from(i.data).toString('hex')]))
      .toEqual(items(b1).map((i) => [i.key.type, i.key.offset, Buffer.from(i.data).toString('hex')]));
    const before = Buffer.from(t.get(items(b2)[0]!.key)!).toString('hex');
    expect(() => addNewDataExtent(fs, b2, 8192n, 5n, 300n, 0n)).toThrow(expect.objectContaining({ code: 'IMAGE_EXTENT_EXISTS' }));
    expect(Buffer.from(t.get(items(b2)[0]!.key)!).toString('hex')).toBe(before);
    // a second file extent item at the same file offset is refused as before, the first one kept
    const root = fs.tree(5n);
    const key = { objectid: 257n, type: 108, offset: 0n };
    insertFileExtent(fs, 5n, 257n, 0n, { disk_bytenr: 0n, disk_num_bytes: 0n, offset: 0n, num_bytes: 4096n, ram_bytes: 4096n });
    const first = Buffer.from(root.get(key)!).toString('hex');
    expect(() => insertFileExtent(fs, 5n, 257n, 0n, { disk_bytenr: b1, disk_num_bytes: 8192n, offset: 0n, num_bytes: 8192n, ram_bytes: 8192n }))
      .toThrow(expect.objectContaining({ code: 'IMAGE_EXTENT_OVERLAP' }));
    expect(Buffer.from(root.get(key)!).toString('hex')).toBe(first);
    expect(getDataExtent(fs, b1)!.refs).toEqual([{ root: 5n, objectid: 257n, offset: 0n, count: 2 }]);
  });

  it('merges csum runs up to the max item size and splits on delete', () => {
    const fs = createFilesystem(new MemoryDevice(256n << 20n), { nodesize: 4096 });
    const max = maxCsumsPerItem(4096);
    const ss = 4096n;
    const base = 1n << 30n;
    for (let i = 0; i < 3; i++) addDataCsums(fs, base + BigInt(i * max) * ss, new Uint8Array(max * 4096));
    normalizeCsumTree(fs);
    const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
    expect(t.range().map((x) => x.data.length)).toEqual([max * 4, max * 4, max * 4]);
    deleteCsums(fs, base + 10n * ss, 5n * ss);
    const after = t.range();
    expect(after[0]!.data.length).toBe(40);
    expect(after[1]!.key.offset).toBe(base + 15n * ss);
    normalizeCsumTree(fs);
    expect(t.range().reduce((n, x) => n + x.data.length, 0)).toBe((3 * max - 5) * 4);
  });

  it('merges checksums written later with the item right before them, across commits, and only in those windows', () => {
    const fs = createFilesystem(new MemoryDevice(256n << 20n), { nodesize: 4096 });
    const max = maxCsumsPerItem(4096);
    const ss = 4096n;
    const base = 1n << 30n;
    const far = base + 1000n * ss * BigInt(max);
    const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
    const key = (offset: bigint) => ({ objectid: BTRFS_EXTENT_CSUM_OBJECTID, type: BTRFS_EXTENT_CSUM_KEY, offset });
    addDataCsums(fs, base, new Uint8Array(10 * 4096));
    // two contiguous short items put behind addDataCsums' back: no window covers them, so they stay apart
    t.put(key(far), new Uint8Array(8));
    t.put(key(far + 2n * ss), new Uint8Array(8));
    fs.commit();
    expect(fs.csumTouched.count).toBe(0);
    addDataCsums(fs, base + 10n * ss, new Uint8Array(max * 4096));
    fs.commit();
    expect(t.range().map((x) => [x.key.offset, x.data.length])).toEqual([[base, max * 4], [base + BigInt(max) * ss, 40], [far, 8], [far + 2n * ss, 8]]);
  });
});
