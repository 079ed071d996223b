import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import path from 'node:path';
import { BtrfsImage } from '../src/image/read/index.js';
import { imageTreeSource } from '../src/image/read/tree-source.js';
import { openImageFile } from '../src/io/image-read-file.js';
import { formatManifest } from '../src/manifest/format.js';
import { afterAll, describe, expect, it } from 'vitest';
import { runMkfs } from '../src/cli/commands/mkfs.js';
import { ImageError } from '../src/errors.js';
import type { BlockDevice } from '../src/image/device.js';
import { MemoryDevice } from '../src/image/device.js';
import { BTRFS_FS_TREE_OBJECTID } from '../src/image/structs/constants.js';
import { createFilesystem } from '../src/image/write/create.js';
import { dropFileExtents, insertFileExtent, writeDataExtent, writeInlineExtent, writePreallocExtent } from '../src/image/write/file-data.js';
import { getDataExtent } from '../src/image/write/extents.js';
import { zlibSync } from 'fflate';
import { createInode, linkInode, setXattr, unlinkEntry, updateInode } from '../src/image/write/inode.js';
import { openFilesystem } from '../src/image/write/open.js';
import { createSubvolume, setReceivedSubvol, setSubvolReadonly } from '../src/image/write/subvol.js';
import { randomUuid } from '../src/image/write/create.js';
import { formatUuid } from '../src/image/structs/bytes.js';
import { FileDevice } from '../src/io/image-file.js';
import { btrfsCheck, checkProblems, manifestOf, mount, skipReason, superGeneration, tmpDir } from './image-write-helpers.js';

const work = tmpDir('btrfs-ts-imgw-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const MiB = 1n << 20n;

function expectClean(image: string): void {
  const { status, output } = btrfsCheck(image);
  expect(checkProblems(output), output).toEqual([]);
  expect(output).toContain('no error found');
  expect(status, output).toBe(0);
}

const progsSkip = skipReason('progs');
const mountSkip = skipReason('mount');
if (progsSkip) console.warn(`image-write tests: ${progsSkip}`);
if (mountSkip) console.warn(`image-write tests: ${mountSkip}`);

describe.skipIf(!!progsSkip)('createFilesystem', () => {
  for (const [profile, sectorsize, nodesize] of [['dup', 4096, 16384], ['single', 4096, 4096], ['dup', 4096, 65536]] as const) {
    it(`makes an image btrfs check accepts (${profile}, nodesize ${nodesize})`, () => {
      const img = path.join(work, `empty-${profile}-${nodesize}.img`);
      const dev = FileDevice.create(img, 256n * MiB);
      const f = createFilesystem(dev, { metadataProfile: profile, sectorsize, nodesize, label: 'empty' });
      dev.close();
      expect(f.generation).toBe(1n);
      expectClean(img);
    });
  }

  it.skipIf(!!mountSkip)('mounts rw in the kernel, takes writes and deletes, and stays clean', () => {
    const img = path.join(work, 'kernel-rw.img');
    const dev = FileDevice.create(img, 256n * MiB);
    createFilesystem(dev, { label: 'rw' });
    dev.close();
    const m = mount(img);
    try {
      fs.writeFileSync(path.join(m.dir, 'a'), 'hello');
      fs.mkdirSync(path.join(m.dir, 'd'));
      fs.writeFileSync(path.join(m.dir, 'd', 'big'), Buffer.alloc(3 << 20, 7));
      fs.rmSync(path.join(m.dir, 'a'));
      execFileSync('sync');
    } finally {
      m.umount();
    }
    expectClean(img);
    const m2 = mount(img, 'ro');
    try {
      expect(fs.readdirSync(m2.dir)).toEqual(['d']);
      expect(fs.statSync(path.join(m2.dir, 'd', 'big')).size).toBe(3 << 20);
    } finally {
      m2.umount();
    }
  });
});

/** A source tree with every inode type, long and non-UTF-8 names, sparse files, xattrs, hard links. */
function makeSourceTree(root: string): void {
  fs.mkdirSync(path.join(root, 'sub', 'deeper'), { recursive: true });
  const w = (rel: string, data: Uint8Array | string): void => fs.writeFileSync(path.join(root, rel), data);
  const rnd = (n: number): Buffer => {
    const b = Buffer.alloc(n);
    let x = n;
    for (let i = 0; i < n; i++) b[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
    return b;
  };
  w('empty', '');
  w('small', 'hello\n');
  w('sector-minus-1', rnd(4095));
  w('sector', rnd(4096));
  w('f5000', rnd(5000));
  w('big', rnd(5 * 1024 * 1024 + 123));
  w('text', 'the quick brown fox jumps over the lazy dog\n'.repeat(10000)); // compressible
  const fd = fs.openSync(path.join(root, 'sparse'), 'w');
  fs.writeSync(fd, Buffer.from('head'), 0, 4, 0);
  fs.writeSync(fd, rnd(10000), 0, 10000, 3 * 1024 * 1024);
  fs.ftruncateSync(fd, 9 * 1024 * 1024);
  fs.closeSync(fd);
  w('sub/deeper/zeros', Buffer.alloc(300000));
  fs.symlinkSync('small', path.join(root, 'link'));
  fs.symlinkSync('x'.repeat(1000), path.join(root, 'longlink'));
  execFileSync('mkfifo', [path.join(root, 'fifo')]);
  execFileSync('mknod', [path.join(root, 'cdev'), 'c', '1', '7']);
  execFileSync('mknod', [path.join(root, 'bdev'), 'b', '259', '70000']);
  execFileSync('python3', ['-c', `import socket;socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path.join(root, 'sock'))})`]);
  fs.linkSync(path.join(root, 'big'), path.join(root, 'hard1'));
  fs.linkSync(path.join(root, 'big'), path.join(root, 'sub', 'hard2'));
  fs.writeFileSync(Buffer.concat([Buffer.from(path.join(root, 'sub') + '/'), Buffer.alloc(255, 0x6e)]), 'long name');
  fs.writeFileSync(Buffer.concat([Buffer.from(path.join(root, 'sub') + '/'), Buffer.from([0xff, 0xfe, 0x2d, 0x80])]), 'bad utf8');
  execFileSync('setfattr', ['-n', 'user.test', '-v', 'value1', path.join(root, 'small')]);
  execFileSync('setfattr', ['-n', 'user.bin', '-v', '0x00ff00', path.join(root, 'sub')]);
  execFileSync('setfattr', ['-n', 'user.big', '-v', 'v'.repeat(3000), path.join(root, 'f5000')]);
  fs.chownSync(path.join(root, 'small'), 1234, 5678);
  fs.chmodSync(path.join(root, 'f5000'), 0o4751);
  execFileSync('touch', ['-h', '-d', '2001-02-03 04:05:06.123456789', path.join(root, 'f5000'), path.join(root, 'link')]);
  execFileSync('touch', ['-d', '1960-01-01 00:00:00.5', path.join(root, 'sub', 'deeper')]);
}

describe.skipIf(!!mountSkip)('mkfs --rootdir', () => {
  const src = path.join(work, 'src');
  makeSourceTree(src);

  for (const variant of [{ name: 'plain', compress: undefined }, { name: 'zstd', compress: 'zstd:3' }, { name: 'lzo', compress: 'lzo' }, { name: 'zlib', compress: 'zlib' }]) {
    it(`reproduces the tree exactly (${variant.name})`, async () => {
      const img = path.join(work, `rootdir-${variant.name}.img`);
      await runMkfs(img, { rootdir: src, metadata: 'dup', quiet: true, compress: variant.compress });
      expectClean(img);
      const m = mount(img, 'ro');
      try {
        expect(await manifestOf(m.dir)).toEqual(await manifestOf(src));
        // the round trip without the kernel: source tree → image → our reader → the same manifest
        const file = await openImageFile(img);
        try {
          const reader = await BtrfsImage.open(file);
          const lines: string[] = [];
          for await (const l of formatManifest(imageTreeSource(reader, await reader.root()))) lines.push(l);
          expect(lines).toEqual(await manifestOf(src));
        } finally {
          await file.close();
        }
        // what the manifest leaves out: ctime to the ns, rdev numbers, sparse allocation
        for (const rel of ['small', 'f5000', 'sub', 'link']) {
          expect(fs.lstatSync(path.join(m.dir, rel), { bigint: true }).ctimeNs).toBe(fs.lstatSync(path.join(src, rel), { bigint: true }).ctimeNs);
        }
        expect(fs.statSync(path.join(m.dir, 'bdev')).rdev).toBe(fs.statSync(path.join(src, 'bdev')).rdev);
        // holes stay holes: plain extents cover the written sectors only, compressed ones a 128 KiB window each
        expect(fs.statSync(path.join(m.dir, 'sparse')).blocks).toBeLessThanOrEqual(variant.compress ? 2 * 256 : 8 * 4);
        expect(fs.statSync(path.join(m.dir, 'hard1')).ino).toBe(fs.statSync(path.join(m.dir, 'sub', 'hard2')).ino);
        if (variant.compress) {
          // the codec's own row shows up: the data really went to disk compressed with it
          const cs = execFileSync('compsize', [path.join(m.dir, 'text')], { encoding: 'utf8' });
          expect(cs).toMatch(new RegExp(`^${variant.name}\\s+\\d+%`, 'm'));
        }
      } finally {
        m.umount();
      }
    }, 60_000);
  }

  it('honours --size and reports a full image as an ImageError', async () => {
    const big = path.join(work, 'toobig');
    fs.mkdirSync(big);
    const fd = fs.openSync(path.join(big, 'f'), 'w');
    const chunk = Buffer.alloc(1 << 20, 1);
    for (let i = 0; i < 200; i++) fs.writeSync(fd, chunk);
    fs.closeSync(fd);
    await expect(runMkfs(path.join(work, 'toobig.img'), { rootdir: big, byteCount: '128M', metadata: 'dup', quiet: true })).rejects.toThrow(ImageError);
  });
});

describe.skipIf(!!mountSkip)('openFilesystem on an image made by mkfs.btrfs', () => {
  it('adds, links, unlinks and truncates on top of the old content; check and kernel agree', async () => {
    const src = path.join(work, 'src-mkfs');
    fs.mkdirSync(path.join(src, 'dir'), { recursive: true });
    fs.writeFileSync(path.join(src, 'dir', 'old.txt'), 'old content\n');
    fs.writeFileSync(path.join(src, 'old.bin'), Buffer.alloc(200000, 3));
    fs.writeFileSync(path.join(src, 'gone'), 'x');
    const img = path.join(work, 'progs.img');
    fs.writeFileSync(img, '');
    fs.truncateSync(img, 300 * 1024 * 1024);
    execFileSync('mkfs.btrfs', ['-q', '-f', '-r', src, img]);
    const before = superGeneration(img);

    const dev = FileDevice.open(img);
    const f = await openFilesystem(dev);
    const root = BTRFS_FS_TREE_OBJECTID;
    const t = { sec: 1700000000n, nsec: 123456789 };
    const ino = createInode(f, root, { mode: 0o100640, uid: 7, gid: 8, atime: t, mtime: t, ctime: t, otime: t });
    const data = Buffer.alloc(70000, 9);
    writeDataExtent(f, root, ino, 0n, data);
    updateInode(f, root, ino, { size: BigInt(data.length) });
    linkInode(f, root, 256n, enc('new.bin'), ino);
    linkInode(f, root, 256n, enc('new-link'), ino);
    const small = createInode(f, root, { mode: 0o100644, mtime: t });
    writeInlineExtent(f, root, small, enc('tiny'));
    updateInode(f, root, small, { size: 4n });
    linkInode(f, root, 256n, enc('tiny'), small);
    setXattr(f, root, small, enc('user.k'), enc('v'));
    // unlink "gone" (nlink -> 0: drop the inode and its extent like the kernel's orphan cleanup)
    const gone = unlinkEntry(f, root, 256n, enc('gone'));
    dropFileExtents(f, root, gone.location.objectid, 0n);
    for (const it of f.tree(root).range({ objectid: gone.location.objectid, type: 0, offset: 0n }, { objectid: gone.location.objectid, type: 255, offset: (1n << 64n) - 1n })) f.tree(root).delete(it.key);
    f.commit();
    f.commit();
    dev.close();
    expect(superGeneration(img)).toBe(before + 2n);
    expectClean(img);

    const m = mount(img, 'ro');
    try {
      expect(fs.readFileSync(path.join(m.dir, 'dir', 'old.txt'), 'utf8')).toBe('old content\n');
      expect(fs.readFileSync(path.join(m.dir, 'old.bin')).equals(Buffer.alloc(200000, 3))).toBe(true);
      expect(fs.readFileSync(path.join(m.dir, 'new.bin')).equals(data)).toBe(true);
      const st = fs.statSync(path.join(m.dir, 'new-link'), { bigint: true });
      expect([st.nlink, st.uid, st.gid, st.mode, st.mtimeNs]).toEqual([2n, 7n, 8n, 0o100640n, 1700000000123456789n]);
      expect(fs.readFileSync(path.join(m.dir, 'tiny'), 'utf8')).toBe('tiny');
      expect(fs.existsSync(path.join(m.dir, 'gone'))).toBe(false);
      expect(execFileSync('getfattr', ['--only-values', '-n', 'user.k', path.join(m.dir, 'tiny')], { encoding: 'utf8' })).toBe('v');
    } finally {
      m.umount();
    }
  }, 60_000);
});

/** Device wrapper whose writes fail after `budget` of them: a crash in the middle of a commit. */
class CrashingDevice implements BlockDevice {
  writes = 0;
  constructor(private readonly inner: BlockDevice, private readonly budget: number) {}
  size(): bigint {
    return this.inner.size();
  }
  read(o: bigint, l: number): Uint8Array {
    return this.inner.read(o, l);
  }
  write(o: bigint, b: Uint8Array): void {
    if (this.writes++ >= this.budget) throw new Error('simulated crash');
    this.inner.write(o, b);
  }
  flush(): void {
    this.inner.flush();
  }
  grow(n: bigint): void {
    this.inner.grow(n);
  }
}

describe.skipIf(!!progsSkip)('crash safety', () => {
  it('a commit interrupted after N writes leaves the previous state intact', async () => {
    const base = path.join(work, 'crash-base.img');
    const dev0 = FileDevice.create(base, 256n * MiB);
    const f0 = createFilesystem(dev0);
    const ino0 = createInode(f0, 5n, { mode: 0o100644 });
    writeDataExtent(f0, 5n, ino0, 0n, Buffer.alloc(8192, 1));
    updateInode(f0, 5n, ino0, { size: 8192n });
    linkInode(f0, 5n, 256n, enc('before'), ino0);
    f0.commit();
    dev0.close();
    const gen = superGeneration(base);

    const mutate = async (dev: BlockDevice): Promise<void> => {
      const f = await openFilesystem(dev);
      for (let i = 0; i < 40; i++) {
        const ino = createInode(f, 5n, { mode: 0o100644 });
        writeDataExtent(f, 5n, ino, 0n, Buffer.alloc(4096 * (1 + (i % 5)), i));
        updateInode(f, 5n, ino, { size: BigInt(4096 * (1 + (i % 5))) });
        linkInode(f, 5n, 256n, enc(`after-${i}-${'y'.repeat(200)}`), ino);
      }
      f.commit();
    };
    // how many device writes a full commit takes (data writes come first, then blocks, then supers)
    const probe = new CrashingDevice(new MemoryDevice(), Number.MAX_SAFE_INTEGER);
    {
      const copy = path.join(work, 'crash-probe.img');
      fs.copyFileSync(base, copy);
      const d = FileDevice.open(copy);
      const counting = new CrashingDevice(d, Number.MAX_SAFE_INTEGER);
      await mutate(counting);
      d.close();
      probe.writes = counting.writes;
      expect(superGeneration(copy)).toBe(gen + 1n);
      expectClean(copy);
    }
    const total = probe.writes;
    // writes end with: ..., last tree block copies, primary superblock, 64 MiB mirror superblock
    const points = [1, 41, Math.floor(total / 2), total - 3, total - 2];
    for (const n of points) {
      const copy = path.join(work, `crash-${n}.img`);
      fs.copyFileSync(base, copy);
      const d = FileDevice.open(copy);
      await expect(mutate(new CrashingDevice(d, n))).rejects.toThrow('simulated crash');
      d.close();
      expect(superGeneration(copy), `crash after ${n} of ${total} writes`).toBe(gen);
      expectClean(copy);
      // and the old state is what a reader sees: reopen and commit must work from it
      const again = FileDevice.open(copy);
      const f = await openFilesystem(again);
      expect(f.generation).toBe(gen);
      again.close();
    }
    // the primary superblock made it, the mirror did not: the new state is the committed one
    const late = path.join(work, 'crash-late.img');
    fs.copyFileSync(base, late);
    const d = FileDevice.open(late);
    await expect(mutate(new CrashingDevice(d, total - 1))).rejects.toThrow('simulated crash');
    d.close();
    expect(superGeneration(late)).toBe(gen + 1n);
    expectClean(late);
  }, 90_000);
});

describe.skipIf(!!progsSkip)('growth', () => {
  it('adds data and metadata chunks and grows the device; a size limit gives IMAGE_FULL', () => {
    const img = path.join(work, 'grow.img');
    const dev = FileDevice.create(img, 200n * MiB);
    const f = createFilesystem(dev, { metadataProfile: 'single', growable: true, maxSize: 2048n * MiB });
    const chunk = Buffer.alloc(4 << 20, 5);
    for (let i = 0; i < 60; i++) {
      const ino = createInode(f, 5n, { mode: 0o100644 });
      writeDataExtent(f, 5n, ino, 0n, chunk);
      updateInode(f, 5n, ino, { size: BigInt(chunk.length) });
      linkInode(f, 5n, 256n, enc(`f${i}`), ino);
      for (let k = 0; k < 200; k++) setXattr(f, 5n, ino, enc(`user.x${k}`), Buffer.alloc(64, k));
    }
    f.commit();
    expect(dev.size()).toBeGreaterThan(200n * MiB);
    dev.close();
    expectClean(img);
    const dev2 = FileDevice.open(img);
    const f2 = createFilesystem(new MemoryDevice(140n * MiB), { growable: true, maxSize: 160n * MiB });
    expect(() => f2.allocData(200n * MiB)).toThrow(/image is full/);
    dev2.close();
  }, 60_000);
});

describe.skipIf(!!mountSkip)('subvolumes and names', () => {
  it('creates a received read-only subvolume and overflows INODE_REF into INODE_EXTREF', () => {
    const img = path.join(work, 'subvol.img');
    const dev = FileDevice.create(img, 256n * MiB);
    const f = createFilesystem(dev);
    const t = { sec: 1600000000n, nsec: 5 };
    const dir = createInode(f, 5n, { mode: 0o40755, mtime: t });
    linkInode(f, 5n, 256n, enc('d'), dir);
    const sv = createSubvolume(f, { parentDir: dir, name: enc('sv'), time: t });
    const ino = createInode(f, sv, { mode: 0o100644, mtime: t });
    writeInlineExtent(f, sv, ino, enc('in subvolume'));
    updateInode(f, sv, ino, { size: 12n });
    // 100 names of 250 bytes for one inode in one directory: ~26 KB of refs, more than one 16 KiB item
    for (let i = 0; i < 100; i++) linkInode(f, sv, 256n, enc(`${String(i).padStart(3, '0')}${'n'.repeat(247)}`), ino);
    const received = randomUuid();
    setReceivedSubvol(f, sv, { receivedUuid: received, stransid: 42n });
    setSubvolReadonly(f, sv, true);
    f.commit();
    dev.close();
    expectClean(img);
    const dump = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', String(sv), img], { encoding: 'utf8' });
    expect(dump).toContain('INODE_EXTREF');
    const m = mount(img, 'ro');
    try {
      const p = path.join(m.dir, 'd', 'sv');
      const show = execFileSync('btrfs', ['subvolume', 'show', p], { encoding: 'utf8' });
      expect(show).toContain(formatUuid(received));
      expect(show).toMatch(/Flags:\s+readonly/);
      const names = fs.readdirSync(p);
      expect(names.length).toBe(100);
      expect(fs.statSync(path.join(p, names[99]!)).nlink).toBe(100);
      expect(fs.readFileSync(path.join(p, names[0]!), 'utf8')).toBe('in subvolume');
    } finally {
      m.umount();
    }
  }, 60_000);
});

describe.skipIf(!!mountSkip)('extents: reflinks, offsets, punching, prealloc, compressed input', () => {
  it('keeps refcounts and contents right when extents are shared, split and dropped', () => {
    const img = path.join(work, 'reflink.img');
    const dev = FileDevice.create(img, 256n * MiB);
    const f = createFilesystem(dev);
    const content = Buffer.alloc(1 << 20);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7 + (i >> 12)) & 255;
    const a = createInode(f, 5n, { mode: 0o100644 });
    const bytenr = writeDataExtent(f, 5n, a, 0n, content);
    updateInode(f, 5n, a, { size: BigInt(content.length) });
    linkInode(f, 5n, 256n, enc('a'), a);
    // b = bytes [256K, 512K) of a's extent, placed at b's offset 0 (clone with offset into the extent)
    const b = createInode(f, 5n, { mode: 0o100644 });
    insertFileExtent(f, 5n, b, 0n, { disk_bytenr: bytenr, disk_num_bytes: 1n << 20n, offset: 256n << 10n, num_bytes: 256n << 10n, ram_bytes: 1n << 20n });
    updateInode(f, 5n, b, { size: 256n << 10n });
    linkInode(f, 5n, 256n, enc('b'), b);
    // punch [512K, 768K) out of a: its extent item splits in two, both still referencing the extent
    dropFileExtents(f, 5n, a, 512n << 10n, 768n << 10n);
    // c: a preallocated range then a compressed extent given already-compressed bytes
    const c = createInode(f, 5n, { mode: 0o100644 });
    writePreallocExtent(f, 5n, c, 0n, 64n << 10n);
    const plain = Buffer.alloc(128 << 10, 0x41);
    const packed = zlibSync(plain);
    writeDataExtent(f, 5n, c, 64n << 10n, packed, 1, plain.length);
    updateInode(f, 5n, c, { size: (64n << 10n) + BigInt(plain.length) });
    linkInode(f, 5n, 256n, enc('c'), c);
    expect(getDataExtent(f, bytenr)!.refs.reduce((n, r) => n + r.count, 0)).toBe(3);
    f.commit();
    // truncate a to 100 KiB + 1: the tail part goes, refs drop to 2
    dropFileExtents(f, 5n, a, 104n << 10n);
    updateInode(f, 5n, a, { size: (100n << 10n) + 1n });
    f.commit();
    expect(getDataExtent(f, bytenr)!.refs.reduce((n, r) => n + r.count, 0)).toBe(2);
    dev.close();
    expectClean(img);
    const m = mount(img, 'ro');
    try {
      expect(fs.readFileSync(path.join(m.dir, 'a')).equals(content.subarray(0, 100 * 1024 + 1))).toBe(true);
      expect(fs.readFileSync(path.join(m.dir, 'b')).equals(content.subarray(256 << 10, 512 << 10))).toBe(true);
      expect(fs.readFileSync(path.join(m.dir, 'c')).equals(Buffer.concat([Buffer.alloc(64 << 10), plain]))).toBe(true);
    } finally {
      m.umount();
    }
    // the kernel must find our keyed back references by their hash to free the shared extent
    const rw = mount(img);
    try {
      for (const n of ['a', 'b', 'c']) fs.rmSync(path.join(rw.dir, n));
      execFileSync('sync');
    } finally {
      rw.umount();
    }
    expectClean(img);
    expect(execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'extent', img], { encoding: 'utf8' })).not.toMatch(/EXTENT_DATA_REF|EXTENT_ITEM \d+\)/);
  }, 60_000);
});

describe.skipIf(!!progsSkip)('btrfs-ts mkfs command line', () => {
  it('accepts mkfs.btrfs spellings and reports bad input as a diagnosed error', async () => {
    const { main } = await import('../src/cli/main.js');
    const img = path.join(work, 'cli.img');
    expect(await main(['node', 'btrfs-ts', 'mkfs', '-q', '-L', 'cli', '-b', '300M', '-n', '8192', '-m', 'single', img])).toBe(0);
    expect(fs.statSync(img).size).toBe(300 * 1024 * 1024);
    expectClean(img);
    expect(execFileSync('btrfs', ['inspect-internal', 'dump-super', img], { encoding: 'utf8' })).toMatch(/label\s+cli/);
    // an existing filesystem is not overwritten without -f
    const errs: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
    try {
      expect(await main(['node', 'btrfs-ts', 'mkfs', '-q', img])).toBe(1);
      expect(await main(['node', 'btrfs-ts', 'mkfs', '-q', '-f', '--compress', 'bogus', img])).toBe(2); // usage error
    } finally {
      process.stderr.write = orig;
    }
    expect(errs.join('')).toMatch(/btrfs-ts: ERROR: .*already contains a btrfs filesystem/);
    expect(errs.join('')).toMatch(/--compress: expected zlib, lzo or zstd/);
  });
});
