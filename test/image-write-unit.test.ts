import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../src/image/device.js';
import { BTRFS_CSUM_TREE_OBJECTID, BTRFS_CSUM_TYPE_XXHASH, BTRFS_EXTENT_CSUM_KEY, BTRFS_EXTENT_CSUM_OBJECTID, BTRFS_EXTENT_TREE_OBJECTID } from '../src/image/structs/constants.js';
import { createFilesystem } from '../src/image/write/create.js';
import { addDataCsums, addDataExtent, addDataRef, addNewDataExtent, changeSharedDataRef, deleteCsums, dropDataRef, getDataExtent, hashExtentDataRef, maxCsumsPerItem, normalizeCsumTree, storeDataExtent } from '../src/image/write/extents.js';
import { insertFileExtent } from '../src/image/write/file-data.js';
import { RangeSet } from '../src/image/write/ranges.js';
import { DirCache } from '../src/image/write/dir-cache.js';
import { encoded, itemWriter } from '../src/image/structs/bytes.js';
import { decodeDirItems, decodeFileExtentItem, encodeDirItems, encodeFileExtentItem, encodeInodeRefs } from '../src/image/structs/fs-items.js';
import { createInode, linkInode, lookupDirEntry, unlinkEntry } from '../src/image/write/inode.js';
import { crc32cBtrfs, crcUpdate } from '../src/util/crc32c.js';
import { loadCsum } from '../src/image/structs/csum.js';

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

  it('an extent of many references changes one keyed item at a time: the same items as a whole rewrite', () => {
    // one extent referenced by 20 files (as a chain of daily snapshots references it from each day), then
    // dropped to 3: after every step its items equal what the canonical rewrite makes of the same set
    const fs = createFilesystem(new MemoryDevice(256n << 20n), { now: { sec: 1n, nsec: 0 } });
    const t = fs.tree(BTRFS_EXTENT_TREE_OBJECTID);
    const b = fs.allocData(8192n);
    const c = fs.allocData(8192n);
    addDataExtent(fs, b, 8192n, 5n, 257n, 0n);
    addDataExtent(fs, c, 8192n, 5n, 257n, 0n);
    const items = (x: bigint) => t.range({ objectid: x, type: 0, offset: 0n }, { objectid: x, type: 255, offset: (1n << 64n) - 1n })
      .filter((i) => i.key.type !== 192).map((i) => [i.key.type, i.key.offset, Buffer.from(i.data).toString('hex')]);
    /** `c` rewritten whole (storeDataExtent) with `b`'s references: the canonical form to compare with. */
    const same = (): void => {
      const x = getDataExtent(fs, b)!;
      storeDataExtent(fs, { ...x, bytenr: c, refs: x.refs.map((r) => ({ ...r })), shared: x.shared?.map((r) => ({ ...r })) });
      expect(items(c)).toEqual(items(b));
    };
    for (let i = 1; i < 20; i++) {
      addDataRef(fs, b, 5n, 257n + BigInt(i), BigInt(i) * 4096n);
      same();
    }
    // a second reference by the same file at the same offset is a count, not an item
    addDataRef(fs, b, 5n, 260n, 3n * 4096n);
    same();
    expect(getDataExtent(fs, b)!.refs.find((r) => r.objectid === 260n)!.count).toBe(2);
    // the head counts them all, each keyed item sits at the kernel's hash of its owner
    const head = t.range({ objectid: b, type: 168, offset: 0n }, { objectid: b, type: 168, offset: (1n << 64n) - 1n })[0]!;
    expect(new DataView(head.data.buffer, head.data.byteOffset).getBigUint64(0, true)).toBe(21n);
    for (const r of getDataExtent(fs, b)!.refs) expect(t.get({ objectid: b, type: 178, offset: hashExtentDataRef(r.root, r.objectid, r.offset) })).toBeDefined();
    // dropping a reference that is not there is refused, nothing changed
    const before = items(b);
    expect(() => dropDataRef(fs, b, 5n, 999n, 0n)).toThrow(expect.objectContaining({ code: 'IMAGE_NO_REF' }));
    expect(() => dropDataRef(fs, b, 5n, 258n, 4096n, 2)).toThrow(expect.objectContaining({ code: 'IMAGE_NO_REF' }));
    expect(items(b)).toEqual(before);
    for (let i = 19; i >= 3; i--) {
      expect(dropDataRef(fs, b, 5n, 257n + BigInt(i), BigInt(i) * 4096n, i === 3 ? 2 : 1)).toBe(false);
      same();
    }
    // many shared references (by FULL_BACKREF leaves) the same way
    for (let i = 0; i < 12; i++) {
      changeSharedDataRef(fs, b, 1n << 30n | BigInt(i) << 14n, 1);
      same();
    }
    for (let i = 0; i < 12; i++) changeSharedDataRef(fs, b, 1n << 30n | BigInt(i) << 14n, -1);
    same();
    expect(getDataExtent(fs, b)!.shared).toEqual([]);
    expect(dropDataRef(fs, b, 5n, 258n, 4096n)).toBe(false);
    expect(dropDataRef(fs, b, 5n, 259n, 8192n)).toBe(false);
    expect(dropDataRef(fs, b, 5n, 257n, 0n)).toBe(true);
    expect(getDataExtent(fs, b)).toBeUndefined();
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

  it('extends the item that ends where new checksums start, before any commit, as btrfs_csum_file_blocks does', () => {
    const fs = createFilesystem(new MemoryDevice(256n << 20n), { nodesize: 4096 });
    const max = maxCsumsPerItem(4096);
    const ss = 4096n;
    const base = 1n << 30n;
    const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
    const sectors = (n: number, fill: number) => new Uint8Array(n * 4096).fill(fill);
    addDataCsums(fs, base, sectors(3, 1), undefined, true);
    addDataCsums(fs, base + 3n * ss, sectors(2, 2), undefined, true);
    expect(t.range().map((x) => [x.key.offset, x.data.length])).toEqual([[base, 20]]);
    // filling the item up: what does not fit starts the next one; a gap starts one of its own
    addDataCsums(fs, base + 5n * ss, sectors(max, 3), undefined, true);
    addDataCsums(fs, base + BigInt(max + 7) * ss, sectors(1, 4), undefined, true);
    expect(t.range().map((x) => [x.key.offset, x.data.length])).toEqual([[base, max * 4], [base + BigInt(max) * ss, 20], [base + BigInt(max + 7) * ss, 4]]);
    // the checksums are the sectors' own, in order, across the extended item and the next
    const sum = (fill: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(crc32cBtrfs(new Uint8Array(4096).fill(fill))); return b; };
    const want = Buffer.concat([...Array(3).fill(sum(1)), ...Array(2).fill(sum(2)), ...Array(max).fill(sum(3)), sum(4)]);
    expect(Buffer.concat(t.range().map((x) => Buffer.from(x.data))).equals(want)).toBe(true);
    fs.commit();
    expect(t.range().map((x) => [x.key.offset, x.data.length])).toEqual([[base, max * 4], [base + BigInt(max) * ss, 20], [base + BigInt(max + 7) * ss, 4]]);
  });
});

describe('data checksums from raw sector CRCs', () => {
  it('takes the first sectors\' checksums from their raw CRC32Cs (the stream\'s), hashes the rest; other checksum types ignore them', async () => {
    await loadCsum(BTRFS_CSUM_TYPE_XXHASH);
    const data = new Uint8Array(3 * 4096 + 100);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
    // raw CRC32C of the first two sectors (seed 0, no inversion), as the stream parser leaves them
    const raw = new Uint32Array([0, 1].map((i) => crcUpdate(0, data.subarray(i * 4096, (i + 1) * 4096))));
    const sum = (d: Uint8Array) => { const p = new Uint8Array(4096); p.set(d); const b = Buffer.alloc(4); b.writeUInt32LE(crc32cBtrfs(p)); return b; };
    const want = Buffer.concat([0, 1, 2, 3].map((i) => sum(data.subarray(i * 4096, (i + 1) * 4096))));
    const fs = createFilesystem(new MemoryDevice(256n << 20n), { nodesize: 4096 });
    addDataCsums(fs, 1n << 30n, data, raw, true);
    expect(Buffer.concat(fs.tree(BTRFS_CSUM_TREE_OBJECTID).range().map((x) => Buffer.from(x.data))).equals(want)).toBe(true);
    // a wrong raw CRC shows: the checksum is taken from it, not recomputed
    const bad = createFilesystem(new MemoryDevice(256n << 20n), { nodesize: 4096 });
    addDataCsums(bad, 1n << 30n, data, new Uint32Array([raw[0]!, raw[1]! ^ 1]), true);
    expect(Buffer.concat(bad.tree(BTRFS_CSUM_TREE_OBJECTID).range().map((x) => Buffer.from(x.data))).equals(want)).toBe(false);
    // xxhash checksums: the CRCs mean nothing there, every sector is hashed
    const xx = createFilesystem(new MemoryDevice(256n << 20n), { nodesize: 4096, csumType: BTRFS_CSUM_TYPE_XXHASH });
    const xx2 = createFilesystem(new MemoryDevice(256n << 20n), { nodesize: 4096, csumType: BTRFS_CSUM_TYPE_XXHASH });
    addDataCsums(xx, 1n << 30n, data, new Uint32Array([1, 2]), true);
    addDataCsums(xx2, 1n << 30n, data, undefined, true);
    const items = (f: typeof xx) => Buffer.concat(f.tree(BTRFS_CSUM_TREE_OBJECTID).range().map((x) => Buffer.from(x.data)));
    expect(items(xx).equals(items(xx2))).toBe(true);
    expect(items(xx).length).toBe(4 * 8);
  });
});

describe('item encoding through the scratch writer', () => {
  it('gives each item its own bytes, equal to a fresh encode, small and past the scratch size', () => {
    const a = encodeInodeRefs([{ index: 2n, name: new TextEncoder().encode('a') }]);
    const b = encodeInodeRefs([{ index: 3n, name: new TextEncoder().encode('bb') }]);
    expect([...a]).toEqual([2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x61]);
    expect(b.length).toBe(12);
    expect(a.buffer).not.toBe(b.buffer);
    const inline = new Uint8Array(5000).fill(7);
    const big = encodeFileExtentItem({ generation: 1n, ram_bytes: 5000n, compression: 0, encryption: 0, other_encoding: 0, type: 0, inline_data: inline, disk_bytenr: 0n, disk_num_bytes: 0n, offset: 0n, num_bytes: 0n });
    expect(big.length).toBe(21 + 5000);
    expect(decodeFileExtentItem(big).inline_data).toEqual(inline);
    // bytes an earlier, longer item left in the scratch buffer read as zeros in a later one
    const item = encodeDirItems([{ location: { objectid: 257n, type: 1, offset: 0n }, transid: 9n, type: 1, name: new TextEncoder().encode('x'), data: new Uint8Array(0) }]);
    expect(decodeDirItems(item)[0]).toMatchObject({ transid: 9n, type: 1 });
  });

  it('refuses an encoder that takes the scratch buffer while another is writing into it', () => {
    const outer = itemWriter(8);
    const inner = itemWriter(4);
    inner.u32(1);
    expect(encoded(inner).length).toBe(4);
    outer.u64(1n);
    expect(() => encoded(outer)).toThrow(/two encoders/);
    const w = itemWriter(2);
    w.u16(0x102);
    expect([...encoded(w)]).toEqual([2, 1]);
  });
});

describe('directories made in this run', () => {
  it('answer lookups of absent names without a search, and see every name put or deleted', () => {
    const fs = createFilesystem(new MemoryDevice(256n << 20n), { now: { sec: 1n, nsec: 0 } });
    const dir = createInode(fs, 5n, { mode: 0o40755 });
    linkInode(fs, 5n, 256n, new TextEncoder().encode('d'), dir);
    const file = createInode(fs, 5n, { mode: 0o100644 });
    const name = new TextEncoder().encode('f');
    expect(lookupDirEntry(fs, 5n, dir, name)).toBeUndefined();
    linkInode(fs, 5n, dir, name, file);
    expect(lookupDirEntry(fs, 5n, dir, name)?.location.objectid).toBe(file);
    unlinkEntry(fs, 5n, dir, name);
    expect(lookupDirEntry(fs, 5n, dir, name)).toBeUndefined();
    linkInode(fs, 5n, dir, name, file);
    fs.commit();
    expect(lookupDirEntry(fs, 5n, dir, name)?.location.objectid).toBe(file);
  });
});

describe('DirCache: names of directories made in this run', () => {
  it('reads the tree only for directories not made here, or past the bound', () => {
    let reads = 0;
    const c = new DirCache(() => { reads++; return undefined; }, () => undefined);
    c.madeDir(300n);
    expect(c.get(300n, 5n)).toBeNull();
    expect(reads).toBe(0);
    expect(c.get(301n, 5n)).toBeNull();
    expect(reads).toBe(1);
    // a put makes the hash present: a lookup of it is the tree's (or the kept entries') to answer
    c.itemChanged(300n, 0xfffffffen, true);
    c.forget(300n, 0xfffffffen);
    expect(c.get(300n, 0xfffffffen)).toBeNull();
    expect(reads).toBe(2);
    expect(c.get(300n, 0xfffffffdn)).toBeNull();
    expect(reads).toBe(2);
    // deleted again: absent without a read
    c.itemChanged(300n, 0xfffffffen, false);
    c.forget(300n, 0xfffffffen);
    expect(c.get(300n, 0xfffffffen)).toBeNull();
    expect(reads).toBe(2);
    // made again (the number given anew): nothing of the old directory's names counts
    c.itemChanged(300n, 7n, true);
    c.madeDir(300n);
    c.forget(300n, 7n);
    expect(c.get(300n, 7n)).toBeNull();
    expect(reads).toBe(2);
    // a tree replaced whole forgets what it made
    c.clear();
    expect(c.get(300n, 9n)).toBeNull();
    expect(reads).toBe(3);
  });

  it('stops answering for made directories once too many names are kept', () => {
    let reads = 0;
    const c = new DirCache(() => { reads++; return undefined; }, () => undefined);
    c.madeDir(300n);
    for (let h = 0n; h < 1n << 17n; h++) c.itemChanged(300n, h, true);
    expect(c.get(300n, 1n << 20n)).toBeNull();
    expect(reads).toBe(0);
    c.itemChanged(300n, 1n << 21n, true);
    expect(c.get(300n, 1n << 20n)).toBeNull();
    expect(reads).toBe(1);
  });
});
