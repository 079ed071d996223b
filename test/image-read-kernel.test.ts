import { copyFileSync, mkdtempSync, openSync, readSync, writeSync, closeSync, rmSync, lstatSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ImageError } from '../src/errors.js';
import { BtrfsImage, type Location } from '../src/image/read/index.js';
import { openImageFile, type FileImageSource } from '../src/io/image-read-file.js';
import { formatUuid } from '../src/image/structs.js';
import { dirTreeSource } from '../src/dirtree/source.js';
import { formatManifest } from '../src/manifest/format.js';
import { canUseKernel, collect, imageManifest, kernelManifest, makeImage, populate, sh, withMount } from './image-read-fixtures.js';

/**
 * The oracle is the kernel: an image written by the kernel (compression on, reflinks, sparse files,
 * subvolumes, snapshots...) is mounted and listed, and the reader must list the very same tree:
 * types, modes, owners, sizes, ns mtimes, content hashes, xattrs, link groups, symlink targets, rdev.
 */

const why = canUseKernel();
if (why) console.warn(`image-read-kernel: skipping kernel tests: ${why}`);

let dir = '';
let img = '';
let src: FileImageSource | undefined;
let image: BtrfsImage;

beforeAll(async () => {
  if (why) return;
  dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-read-'));
  img = join(dir, 'kernel.img');
  makeImage(img);
  await withMount(img, dir, 'compress=zlib', async (mnt) => populate(mnt, img));
  src = await openImageFile(img);
  image = await BtrfsImage.open(src);
}, 120_000);

afterAll(async () => {
  await src?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The snapshot's entry for the nested subvolume is a kernel-made placeholder dir with a fresh mtime. */
const PLACEHOLDERS = ['snap/d/nested', 'snap-ro/d/nested'];
const dropPlaceholders = (lines: string[]): string[] => lines.filter((l) => !PLACEHOLDERS.some((p) => l.startsWith(p + ' ')));

describe.skipIf(why !== null)('reader vs kernel mount', () => {
  it('the whole tree (all subvolumes) lists exactly as the kernel shows it', async () => {
    const ours = await imageManifest(image);
    const theirs = await withMount(img, dir, 'ro', (mnt) => kernelManifest(mnt));
    expect(ours.length).toBeGreaterThan(1500);
    expect(dropPlaceholders(ours)).toEqual(dropPlaceholders(theirs));
    for (const p of PLACEHOLDERS) {
      expect(ours.find((l) => l.startsWith(p + ' '))).toMatch(/^\S+ dir mode=0755 /);
      expect(theirs.find((l) => l.startsWith(p + ' '))).toMatch(/^\S+ dir mode=0755 /);
    }
  }, 60_000);

  it('the image really holds every extent kind the manifest comparison is meant to cover', async () => {
    const { decodeFileExtentItem } = await import('../src/image/structs.js');
    const seen = new Set<string>();
    let maxLevel = 0;
    for (const sv of await image.listSubvolumes()) {
      const tree = await image.reader.tree(sv.id);
      maxLevel = Math.max(maxLevel, tree.level);
      const all = { objectid: 0n, type: 0, offset: 0n };
      const end = { objectid: (1n << 64n) - 1n, type: 255, offset: (1n << 64n) - 1n };
      for await (const it of image.reader.trees.iterate(tree, all, end)) {
        if (it.key.type !== 108) continue;
        const fe = decodeFileExtentItem(it.data);
        seen.add(`type${fe.type}-comp${fe.compression}`);
        if (fe.type !== 0 && fe.offset > 0n) seen.add(`partial-comp${fe.compression}`);
      }
    }
    for (const k of ['type0-comp0', 'type0-comp1', 'type0-comp2', 'type0-comp3', 'type1-comp0', 'type1-comp1', 'type1-comp2', 'type1-comp3',
      'type2-comp0', 'partial-comp0', 'partial-comp1', 'partial-comp3']) expect(seen, k).toContain(k);
    expect(maxLevel, 'fs tree with internal nodes').toBeGreaterThan(0);
  });

  it('inode numbers, ctime, nlink and rdev match lstat on the mount', async () => {
    const paths = ['small', 'small2', 'big', 'sparse', 'links/a/orig', 'links/sym', 'fifo', 'chr', 'blk', 'sub', 'sub/f', 'snap/f', 'c/zstd/text'];
    const stats = await withMount(img, dir, 'ro', async (mnt) => paths.map((p) => lstatSync(join(mnt, p), { bigint: true })));
    for (const [i, p] of paths.entries()) {
      const loc = await image.resolve(p);
      const st = await image.stat(loc);
      const k = stats[i]!;
      expect(BigInt(loc.ino), p).toBe(k.ino);
      expect(st.ctime.sec * 1_000_000_000n + BigInt(st.ctime.nsec), p).toBe(k.ctimeNs);
      expect(st.nlink, p).toBe(Number(k.nlink));
      expect(st.mode, p).toBe(Number(k.mode));
      if (p === 'chr' || p === 'blk') expect(k.rdev).toBe(p === 'chr' ? 0x103n : 0x7c8n);
    }
    // 121 names with 200-byte names overflow one INODE_REF item: the rest are INODE_EXTREFs
    const xref = await image.links(await image.resolve('xref/f'));
    expect(xref.length).toBe(121);
    const tree = await image.reader.tree(5n);
    const xloc = await image.resolve('xref/f');
    const extref = await image.reader.trees.lookupLE(tree, { objectid: xloc.ino, type: 13, offset: (1n << 64n) - 1n });
    expect(extref?.key.type, 'INODE_EXTREF present').toBe(13);
    const orig = await image.resolve('links/a/orig');
    const names = (await image.links(orig)).map((l) => Buffer.from(l.name).toString()).sort();
    expect(names).toEqual(['orig', 'second', 'third']);
  }, 60_000);

  it('subvolume list matches `btrfs subvolume list` (ids, gens, parents, uuids, paths, read-only)', async () => {
    const ours = (await image.listSubvolumes()).filter((s) => s.id !== 5n);
    const out = await withMount(img, dir, 'ro', async (mnt) => sh(`btrfs subvolume list -g -c -u -q -R "$MNT"`, { MNT: mnt }));
    const theirs = out.trim().split('\n').map((l) => {
      const m = /^ID (\d+) gen (\d+) cgen (\d+) top level (\d+) parent_uuid (\S+)\s+received_uuid (\S+)\s+uuid (\S+) path (.*)$/.exec(l);
      if (!m) throw new Error(`unparsed: ${l}`);
      return { id: BigInt(m[1]!), gen: BigInt(m[2]!), cgen: BigInt(m[3]!), top: BigInt(m[4]!), puuid: m[5]!, ruuid: m[6]!, uuid: m[7]!, path: m[8]! };
    });
    const u = (b: Uint8Array): string => (b.every((x) => x === 0) ? '-' : formatUuid(b));
    expect(ours.map((s) => ({ id: s.id, gen: s.generation, cgen: s.otransid, top: s.parent, puuid: u(s.parentUuid), ruuid: u(s.receivedUuid), uuid: u(s.uuid), path: s.path })))
      .toEqual(theirs);
    const ro = await withMount(img, dir, 'ro', async (mnt) => sh(`btrfs subvolume list -r "$MNT" | sed 's/.* path //'`, { MNT: mnt }));
    expect(ours.filter((s) => s.readonly).map((s) => s.path)).toEqual(ro.trim().split('\n'));
    const recv = await image.subvolumeByPath('recv/snap-ro');
    expect(formatUuid(recv.receivedUuid)).toBe(formatUuid((await image.subvolumeByPath('snap-ro')).uuid));
    expect(recv.stransid).toBeGreaterThan(0n);
    expect(recv.rtransid).toBeGreaterThan(0n);
    const snap = await image.subvolumeByPath('snap');
    expect(formatUuid(snap.parentUuid)).toBe(formatUuid((await image.subvolumeByPath('sub')).uuid));
  }, 60_000);

  it('a subvolume can be read on its own and paths cross subvolume boundaries', async () => {
    const nested = await image.resolve('sub/d/nested/n');
    const sub = await image.subvolumeByPath('sub/d/nested');
    expect(nested.root).toBe(sub.id);
    const chunks: Uint8Array[] = [];
    for await (const c of image.readFile(nested)) chunks.push(c);
    expect(Buffer.concat(chunks).toString()).toBe('nested\n');
    const snapNested = await image.resolve('snap/d/nested');
    expect(snapNested.emptySubvolDir).toBe(true);
    await expect(image.resolve('small/x')).rejects.toThrow(/not a directory/);
    await expect(image.resolve('nope')).rejects.toThrow(ImageError);
  });
});

describe.skipIf(why !== null)('corruption is diagnosed, never a crash', () => {
  /** Physical copies of the tree block holding `path`'s inode item (both DUP copies). */
  async function leafOf(loc: Location): Promise<{ bytenr: bigint; phys: bigint[] }> {
    const tree = await image.reader.tree(loc.root);
    // A path's inode lives in the leaf reached by a search; find it by walking the root down.
    let bytenr = tree.bytenr;
    for (;;) {
      const tb = await image.reader.trees.readBlock(bytenr, { level: (await blockLevel(bytenr)), generation: await blockGen(bytenr), owner: tree.id });
      if (tb.header.level === 0) break;
      let i = 0;
      while (i + 1 < tb.ptrs.length && (tb.ptrs[i + 1]!.key.objectid < loc.ino || (tb.ptrs[i + 1]!.key.objectid === loc.ino && tb.ptrs[i + 1]!.key.type <= 1))) i++;
      bytenr = tb.ptrs[i]!.blockptr;
    }
    return { bytenr, phys: image.reader.chunks.map(bytenr, image.superblock.nodesize, 'test') };
  }
  async function blockLevel(bytenr: bigint): Promise<number> {
    const phys = image.reader.chunks.map(bytenr, 4096, 'test')[0]!;
    return (await src!.read(phys + 100n, 1))[0]!;
  }
  async function blockGen(bytenr: bigint): Promise<bigint> {
    const phys = image.reader.chunks.map(bytenr, 4096, 'test')[0]!;
    return new DataView((await src!.read(phys + 80n, 8)).buffer).getBigUint64(0, true);
  }
  const flip = (file: string, at: bigint): void => {
    const fd = openSync(file, 'r+');
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, Number(at));
    b[0] = b[0]! ^ 0x5a;
    writeSync(fd, b, 0, 1, Number(at));
    closeSync(fd);
  };

  it('a flipped byte in a tree block: DUP copy used; both copies bad: error names the bytenr', async () => {
    const target = await leafOf(await image.resolve('small'));
    expect(target.phys.length).toBe(2);
    const bad = join(dir, 'bad.img');
    copyFileSync(img, bad);
    flip(bad, target.phys[0]! + 2000n);
    const s1 = await openImageFile(bad);
    try {
      const img1 = await BtrfsImage.open(s1);
      expect((await img1.stat(await img1.resolve('small'))).size).toBe(6n);
    } finally {
      await s1.close();
    }
    flip(bad, target.phys[1]! + 2000n);
    const s2 = await openImageFile(bad);
    try {
      const img2 = await BtrfsImage.open(s2);
      const err = await img2.resolve('small').then(async (l) => img2.stat(l)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageError);
      expect((err as ImageError).message).toContain(`tree block ${target.bytenr}`);
      expect((err as ImageError).message).toMatch(/checksum mismatch/);
      expect((err as ImageError).offset).toBe(target.bytenr);
    } finally {
      await s2.close();
    }
  });

  it('a flipped data byte fails the data checksum, naming the logical address', async () => {
    const loc = await image.resolve('big');
    const bad = join(dir, 'bad-data.img');
    copyFileSync(img, bad);
    // find big's first extent via the reader's own tree access
    const tree = await image.reader.tree(loc.root);
    const { decodeFileExtentItem } = await import('../src/image/structs.js');
    const it = await image.reader.trees.lookup(tree, { objectid: loc.ino, type: 108, offset: 0n });
    const fe = decodeFileExtentItem(it!.data);
    const phys = image.reader.chunks.map(fe.disk_bytenr, 4096, 'test')[0]!;
    flip(bad, phys + 10n);
    const s = await openImageFile(bad);
    try {
      const img2 = await BtrfsImage.open(s);
      const read = async (): Promise<void> => {
        for await (const c of img2.readFile(await img2.resolve('big'))) void c;
      };
      await expect(read()).rejects.toThrow(new RegExp(`data checksum mismatch at logical ${fe.disk_bytenr}`));
    } finally {
      await s.close();
    }
  });

  it('garbage instead of a superblock is refused clearly', async () => {
    const bad = join(dir, 'bad-super.img');
    sh(`head -c 1048576 /dev/urandom > "$F"`, { F: bad });
    const s = await openImageFile(bad);
    try {
      await expect(BtrfsImage.open(s)).rejects.toThrow(/no valid superblock: superblock at 65536: bad magic/);
    } finally {
      await s.close();
    }
  });
});

describe.skipIf(why !== null)('mkfs.btrfs images', () => {
  it('plain mkfs and --rootdir images list as the kernel shows them', async () => {
    const root = join(dir, 'rootdir');
    sh(String.raw`
      mkdir -p "$R/d/e"; echo hi > "$R/f"; head -c 100000 /dev/urandom > "$R/d/big"; ln "$R/f" "$R/d/hard"
      ln -s f "$R/sym"; mkfifo "$R/fifo"; setfattr -n user.a -v b "$R/f"; truncate -s 1M "$R/d/e/sparse"; chmod 700 "$R/d/e"
    `, { R: root });
    for (const args of [[], ['--rootdir', root], ['--rootdir', root, '-m', 'single', '-n', '4096']]) {
      const p = join(dir, `mkfs-${args.length}.img`);
      makeImage(p, '256M', args);
      const s = await openImageFile(p);
      try {
        const im = await BtrfsImage.open(s);
        const ours = await imageManifest(im);
        const theirs = await withMount(p, dir, 'ro', (mnt) => kernelManifest(mnt));
        expect(ours, args.join(' ')).toEqual(theirs);
        expect(ours.length).toBe(args.length ? 9 : 1);
      } finally {
        await s.close();
      }
    }
  }, 60_000);
});

describe.skipIf(why !== null)('CLI: ls, cat, subvolume list, extract', () => {
  async function run(args: string[]): Promise<{ code: number; out: Buffer; err: string }> {
    const { main } = await import('../src/cli/main.js');
    const out: Buffer[] = [];
    let err = '';
    const so = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => (out.push(Buffer.from(c)), true));
    const se = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((err += c.toString()), true));
    try {
      process.exitCode = undefined;
      const code = await main(['node', 'btrfs-ts', ...args]);
      return { code, out: Buffer.concat(out), err };
    } finally {
      so.mockRestore();
      se.mockRestore();
      process.exitCode = undefined;
    }
  }

  it('ls -l matches `ls -lnU --full-time` on the mount (order, mode, links, ids, size, mtime, name, target)', async () => {
    const ours = (await run(['ls', '-l', img, '/'])).out.toString().trim().split('\n');
    const theirs = await withMount(img, dir, 'ro', async (mnt) => sh(`cd "$MNT" && TZ=UTC ls -lnU --time-style=full-iso`, { MNT: mnt }));
    const norm = (l: string): string => l.replace(/ \+0000/, '').replace(/(\d+), +(\d+)/, '$1,$2').split(/ +/).join(' ');
    expect(ours.map(norm)).toEqual(theirs.trim().split('\n').slice(1).map(norm));
    expect(ours.join('\n')).toContain('links');
    const sym = (await run(['ls', '-l', img, 'links/sym'])).out.toString();
    expect(sym).toMatch(/^lrwxrwxrwx .* 2001-02-03 04:05:06\.500000000 links\/sym -> \.\.\/small\n$/);
  }, 30_000);

  it('cat writes the exact bytes the kernel reads; errors are diagnosed', async () => {
    for (const p of ['c/lzo/partial', 'sparse', 'rpart', 'sub/big.reflink']) {
      const ours = (await run(['cat', img, p])).out;
      const theirs = await withMount(img, dir, 'ro', async (mnt) => readFileSync(join(mnt, p)));
      expect(ours.equals(theirs), p).toBe(true);
    }
    const r = await run(['cat', img, 'links']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/btrfs-ts: ERROR: .*not a regular file/);
  }, 30_000);

  it('subvolume list prints every subvolume with uuids and ro/rw', async () => {
    const lines = (await run(['subvolume', 'list', img])).out.toString().trim().split('\n');
    expect(lines.map((l) => l.replace(/^.* (r[ow]) path (.*)$/, '$2 $1'))).toEqual(['sub rw', 'sub/d/nested rw', 'snap rw', 'snap-ro ro', 'recv/snap-ro ro']);
  });

  it('extract copies the tree out; the copy lists like the kernel mount (times to the microsecond)', async () => {
    const out = join(dir, 'extracted');
    const r = await run(['extract', `${img}:`, out]);
    expect(r.code, r.err).toBe(0);
    const ex = await collect(formatManifest(dirTreeSource(out), { skipXattrPrefixes: ['security.selinux'] }));
    const k = await withMount(img, dir, 'ro', async (mnt) => collect(formatManifest(dirTreeSource(mnt), { skipXattrPrefixes: ['security.selinux'] })));
    // Node's utimes takes a double and keeps microseconds; everything else must be exact.
    const us = (l: string): string => l.replace(/mtime=(\d+)\.(\d{6})\d{3}/, 'mtime=$1.$2');
    expect(dropPlaceholders(ex).map(us)).toEqual(dropPlaceholders(k).map(us));
    const again = await run(['extract', `${img}:sub`, out]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/not empty/);
    rmSync(out, { recursive: true, force: true });
  }, 300_000);
});

describe.skipIf(why !== null)('default subvolume and single-file extract', () => {
  it('defaultSubvolume follows `btrfs subvolume set-default`', async () => {
    expect(await image.defaultSubvolume()).toBe(5n);
    const p = join(dir, 'default.img');
    makeImage(p);
    await withMount(p, dir, 'rw', async (mnt) => sh(`btrfs -q subvolume create "$M/s1" && btrfs -q subvolume create "$M/s2" && btrfs subvolume set-default "$M/s2"`, { M: mnt }));
    const s = await openImageFile(p);
    try {
      const im = await BtrfsImage.open(s);
      expect(await im.defaultSubvolume()).toBe((await im.subvolumeByPath('s2')).id);
      expect(im.hasLogTree).toBe(false);
    } finally {
      await s.close();
    }
  });

  it('extract IMAGE:FILE puts the file into DIR under its name, with its metadata', async () => {
    const { main } = await import('../src/cli/main.js');
    const out = join(dir, 'one');
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['node', 'btrfs-ts', 'extract', `${img}:links/a/orig`, out])).toBe(0);
    } finally {
      err.mockRestore();
    }
    expect(readFileSync(join(out, 'orig'), 'utf8')).toBe('linked\n');
    const k = await withMount(img, dir, 'ro', async (mnt) => lstatSync(join(mnt, 'links/a/orig'), { bigint: true }));
    const e = lstatSync(join(out, 'orig'), { bigint: true });
    expect(e.mode).toBe(k.mode);
    expect(e.mtimeNs / 1000n).toBe(k.mtimeNs / 1000n);
  });
});

describe.skipIf(why !== null)('images written by btrfs-ts mkfs', () => {
  it('btrfs-ts mkfs --rootdir --compress zstd reads back like the kernel mount shows it', async () => {
    const { main } = await import('../src/cli/main.js');
    const root = join(dir, 'ts-rootdir');
    sh(String.raw`
      mkdir -p "$R/d"; for i in $(seq 1 300); do echo "compressible line $i" ; done > "$R/text"
      head -c 200000 /dev/urandom > "$R/d/rand"; ln "$R/text" "$R/d/hard"; ln -s text "$R/sym"; truncate -s 3M "$R/sparse"
      setfattr -n user.k -v v "$R/text"; mkfifo "$R/fifo"
    `, { R: root });
    const p = join(dir, 'ts.img');
    const code = await main(['node', 'btrfs-ts', 'mkfs', '-q', '--rootdir', root, '--compress', 'zstd', p]);
    expect(code).toBe(0);
    const s = await openImageFile(p);
    try {
      const im = await BtrfsImage.open(s);
      const ours = await imageManifest(im);
      const theirs = await withMount(p, dir, 'ro', (mnt) => kernelManifest(mnt));
      expect(ours).toEqual(theirs);
      expect(ours.length).toBe(8);
    } finally {
      await s.close();
    }
  }, 60_000);
});
