import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageReader } from '../src/image/read/image.js';
import { listSubvolumes } from '../src/image/read/subvols.js';
import { fromBlockDevice } from '../src/image/read/source.js';
import {
  BTRFS_DIR_INDEX_KEY, BTRFS_FEATURE_INCOMPAT_NO_HOLES, BTRFS_FS_TREE_OBJECTID, BTRFS_INODE_ROOT_ITEM_INIT,
  BTRFS_ROOT_SUBVOL_RDONLY,
} from '../src/image/structs/constants.js';
import { decodeDirItems } from '../src/image/structs/fs-items.js';
import type { BtrfsRootItem } from '../src/image/structs/tree-items.js';
import { chunkLength } from '../src/image/write/chunk-size.js';
import { createFilesystem } from '../src/image/write/create.js';
import { openFilesystem } from '../src/image/write/open.js';
import { Populator } from '../src/image/write/populate.js';
import { getRootItem, updateRootItem } from '../src/image/write/subvol.js';
import { FileDevice } from '../src/io/image-file.js';
import { populateFromDir } from '../src/dirtree/rootdir.js';
import { BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM } from '../src/image/structs/constants.js';
import * as C from '../src/stream/constants.js';
import type { SendCommand } from '../src/stream/types.js';
import { encodeCommand, encodeStreamHeader } from '../src/stream/writer.js';
import { b, encodeAll, uuid } from './helpers/craft.js';
import { BIN, holeStreams, kernelReceive, linkName, linksStream, sha256, streamFile, tsReceive } from './helpers/layouts.js';
import { storedManifest } from './helpers/streams.js';
import { btrfsCheck, checkProblems, manifestOf, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * What the kernel sees in images btrfs-ts writes (issue 10 items 1-3): received subvolumes read-only for
 * the kernel (root items as its receive leaves them), the target's feature flags honoured (non-skinny
 * metadata, no-holes, extref), and chunks sized so the kernel can balance small images.
 */
const work = tmpDir('btrfs-ts-kfeat-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const MiB = 1n << 20n;

const mountSkip = skipReason('mount');
const progsSkip = skipReason('progs');
if (mountSkip) console.warn(`SKIP kernel-features kernel tests: ${mountSkip}`);
if (progsSkip) console.warn(`SKIP kernel-features btrfs-progs tests: ${progsSkip}`);

function expectClean(image: string, ...extra: string[]): void {
  const r = spawnSync('btrfs', ['check', '--readonly', ...extra, image], { encoding: 'utf8' });
  const out = `${r.stdout}\n${r.stderr}`;
  expect(checkProblems(out), out).toEqual([]);
  expect(r.status, out).toBe(0);
}

function mkfsBtrfs(image: string, size: string, ...args: string[]): void {
  fs.rmSync(image, { force: true });
  execFileSync('truncate', ['-s', size, image]);
  execFileSync('mkfs.btrfs', ['-q', '-f', ...args, image], { stdio: 'ignore' });
}

async function withReader<T>(image: string, f: (img: ImageReader) => Promise<T>): Promise<T> {
  const dev = FileDevice.open(image);
  try {
    return await f(await ImageReader.open(fromBlockDevice(dev)));
  } finally {
    dev.close();
  }
}

interface SubvolRoot {
  id: bigint;
  keyOffset: bigint;
  item: BtrfsRootItem;
  /** Offset of the location key in the directory entry that names the subvolume. */
  entryOffset: bigint;
}

/** Root item, its key offset and its directory entry's location offset, by subvolume path. */
async function subvolRoots(image: string): Promise<Map<string, SubvolRoot>> {
  return withReader(image, async (img) => {
    const out = new Map<string, SubvolRoot>();
    const fsTree = await img.tree(BTRFS_FS_TREE_OBJECTID);
    const entries = new Map<bigint, bigint>();
    for await (const it of img.trees.iterate(fsTree, { objectid: 256n, type: BTRFS_DIR_INDEX_KEY, offset: 0n }, { objectid: 256n, type: BTRFS_DIR_INDEX_KEY, offset: (1n << 64n) - 1n })) {
      for (const d of decodeDirItems(it.data)) entries.set(d.location.objectid, d.location.offset);
    }
    for (const s of await listSubvolumes(img)) {
      if (s.id === BTRFS_FS_TREE_OBJECTID) continue;
      const r = (await img.rootItem(s.id))!;
      out.set(s.path, { id: s.id, keyOffset: r.key.offset, item: r.item, entryOffset: entries.get(s.id) ?? -1n });
    }
    return out;
  });
}

/** The root item fields that do not depend on where and when: what must equal the kernel's. */
function shape(r: SubvolRoot): Record<string, unknown> {
  const i = r.item;
  return {
    inode: { ...i.inode },
    flags: i.flags, refs: i.refs, byte_limit: i.byte_limit, drop_progress: i.drop_progress, drop_level: i.drop_level,
    generationV2Matches: i.generation === i.generation_v2, received_uuid: Buffer.from(i.received_uuid).toString('hex'),
    stransid: i.stransid, stime: i.stime, snapshotKeyed: r.keyOffset !== 0n, keyNotAfterOtransid: r.keyOffset <= i.otransid,
    entryOffset: r.entryOffset, hasRtime: i.rtime.sec > 0n, rtransidSet: i.rtransid > 0n, otransidLeCtransid: i.otransid <= i.ctransid,
  };
}

describe.skipIf(!!mountSkip)('root items: received subvolumes are read-only for the kernel', () => {
  const ts = join(work, 'roots-ts.img');
  const kernel = join(work, 'roots-kernel.img');
  const chain = [streamFile('full-v1'), streamFile('incr-v1')];
  beforeAll(() => {
    const r = tsReceive(ts, ...chain);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    mkfsBtrfs(kernel, '512M');
    const m = mount(kernel);
    try {
      expect(kernelReceive(m.dir, ...chain).status).toBe(0);
    } finally {
      m.umount();
    }
  });

  it('equal the kernel-received root items field by field (flags, inode with ROOT_ITEM_INIT, keys, stamps)', async () => {
    const mine = await subvolRoots(ts);
    const theirs = await subvolRoots(kernel);
    expect([...mine.keys()].sort()).toEqual(['full', 'incr']);
    for (const name of ['full', 'incr']) {
      expect(shape(mine.get(name)!), name).toEqual(shape(theirs.get(name)!));
      expect(mine.get(name)!.item.inode.flags & BTRFS_INODE_ROOT_ITEM_INIT).toBe(BTRFS_INODE_ROOT_ITEM_INIT);
    }
    // the incremental is a snapshot of its parent, keyed by the transaction before its creation: blocks of
    // its own, changed in the transaction that made it, must be newer than the key (the kernel's drop of
    // a deleted subvolume relies on it: write/subvol.ts snapshotKeyOffset, test/subvolume-delete.test.ts)
    expect(mine.get('incr')!.item.parent_uuid).toEqual(mine.get('full')!.item.uuid);
    expect(mine.get('incr')!.keyOffset).toBe(mine.get('incr')!.item.otransid - 1n);
    expect(theirs.get('incr')!.keyOffset).toBe(theirs.get('incr')!.item.otransid);
    const fsTree = await withReader(ts, async (img) => (await img.rootItem(BTRFS_FS_TREE_OBJECTID))!.item);
    expect(fsTree.inode.flags & BTRFS_INODE_ROOT_ITEM_INIT).toBe(BTRFS_INODE_ROOT_ITEM_INIT);
  });

  it('the kernel keeps them read-only: property ro=true, EROFS, send works, the flag survives reads', async () => {
    const m = mount(ts, 'rw,strictatime');
    try {
      for (const name of ['full', 'incr']) {
        const dir = join(m.dir, name);
        expect(execFileSync('btrfs', ['property', 'get', '-ts', dir, 'ro'], { encoding: 'utf8' }).trim()).toBe('ro=true');
        expect(() => fs.writeFileSync(join(dir, 'new-file'), 'x')).toThrow(/EROFS/);
      }
      // strictatime: reading every file would rewrite atimes (and so the root item) on a writable subvolume
      expect((await manifestOf(join(m.dir, 'incr'))).length).toBeGreaterThan(10);
      const sent = join(work, 'roots-send.stream');
      const s = spawnSync('btrfs', ['send', '-q', '-f', sent, '-p', join(m.dir, 'full'), join(m.dir, 'incr')], { encoding: 'utf8' });
      expect(s.stderr).toBe('');
      expect(s.status).toBe(0);
      expect(fs.statSync(sent).size).toBeGreaterThan(1000);
    } finally {
      m.umount();
    }
    const after = await subvolRoots(ts);
    for (const name of ['full', 'incr']) {
      expect(after.get(name)!.item.flags & BTRFS_ROOT_SUBVOL_RDONLY, name).toBe(BTRFS_ROOT_SUBVOL_RDONLY);
    }
    expectClean(ts);
  });

  it('root items an earlier btrfs-ts wrote without ROOT_ITEM_INIT are fixed when receive rewrites the image', async () => {
    const old = join(work, 'roots-old.img');
    expect(tsReceive(old, streamFile('full-v1')).status).toBe(0);
    // make it look like an image of an earlier btrfs-ts: no ROOT_ITEM_INIT anywhere
    const dev = FileDevice.open(old);
    try {
      const f = await openFilesystem(dev);
      for (const id of [BTRFS_FS_TREE_OBJECTID, 256n]) {
        const cur = getRootItem(f, id);
        updateRootItem(f, id, { inode: { ...cur.inode, flags: cur.inode.flags & ~BTRFS_INODE_ROOT_ITEM_INIT } });
      }
      // the model already fixed them on open; write the old state by committing the stripped items
      f.commit();
    } finally {
      dev.close();
    }
    const before = await subvolRoots(old);
    expect(before.get('full')!.item.inode.flags & BTRFS_INODE_ROOT_ITEM_INIT).toBe(0n);
    expect(before.get('full')!.item.flags).toBe(BTRFS_ROOT_SUBVOL_RDONLY);
    expect(tsReceive(old, streamFile('multi-v1')).status).toBe(0);
    const after = await subvolRoots(old);
    for (const name of ['full', 'm1', 'm2']) {
      expect(after.get(name)!.item.inode.flags & BTRFS_INODE_ROOT_ITEM_INIT, name).toBe(BTRFS_INODE_ROOT_ITEM_INIT);
      expect(after.get(name)!.item.flags, name).toBe(BTRFS_ROOT_SUBVOL_RDONLY);
    }
    const m = mount(old);
    try {
      expect(execFileSync('btrfs', ['property', 'get', '-ts', join(m.dir, 'full'), 'ro'], { encoding: 'utf8' }).trim()).toBe('ro=true');
    } finally {
      m.umount();
    }
    expectClean(old);
  });
});

describe.skipIf(!!progsSkip)("the target's feature flags", () => {
  it.skipIf(!!mountSkip)('-O ^skinny-metadata: a snapshot shares tree blocks, their EXTENT_ITEMs hold two references by tree; check clean, the kernel reads both trees', async () => {
    const img = join(work, 'noskinny.img');
    // 4 KiB nodes: the 300 names span many leaves, most of which the snapshot keeps shared
    mkfsBtrfs(img, '256M', '-n', '4096', '-O', '^skinny-metadata');
    const full = join(work, 'links-300.stream');
    const incr = join(work, 'links-snap.stream');
    fs.writeFileSync(full, linksStream(300));
    fs.writeFileSync(incr, encodeAll(1, [
      { cmd: C.BTRFS_SEND_C_SNAPSHOT, path: b('links2'), uuid: uuid(52), ctransid: 6n, cloneUuid: uuid(51), cloneCtransid: 5n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('new'), ino: 259n },
      { cmd: C.BTRFS_SEND_C_END },
    ]));
    const r = tsReceive(img, full, incr);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expectClean(img, '--check-data-csum');
    const extent = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'extent', img], { encoding: 'utf8' });
    expect(extent).not.toMatch(/METADATA_ITEM/);
    // head EXTENT_ITEM (nodesize long) with its tree_block_info, then both references inline, in the
    // kernel's order (decreasing root): 24 + 18 + 2 * 9 bytes
    expect(extent).toMatch(/\(\d+ EXTENT_ITEM 4096\) itemoff \d+ itemsize 60\n\s+refs 2 gen \d+ flags TREE_BLOCK\n\s+tree block key \([^)]*\) level 0\n\s+tree block backref root 257\n\s+tree block backref root 256\n/);
    const m = mount(img, 'ro');
    try {
      expect(fs.readdirSync(join(m.dir, 'links', 'd'))).toHaveLength(300);
      expect(fs.readdirSync(join(m.dir, 'links2', 'd'))).toHaveLength(300);
      expect(fs.readdirSync(join(m.dir, 'links2')).sort()).toEqual(['d', 'new']);
    } finally {
      m.umount();
    }
  });

  it.skipIf(!!mountSkip)('-O ^no-holes: explicit hole extents on every path; check clean, the kernel-received tree', async () => {
    const img = join(work, 'noholes.img');
    const kimg = join(work, 'noholes-kernel.img');
    mkfsBtrfs(img, '512M', '-O', '^no-holes');
    mkfsBtrfs(kimg, '512M', '-O', '^no-holes');
    const { full, incr } = holeStreams();
    const holesFull = join(work, 'holes-full.stream');
    const holesIncr = join(work, 'holes-incr.stream');
    fs.writeFileSync(holesFull, full);
    fs.writeFileSync(holesIncr, incr);
    const chain = ['full-v1', 'incr-v1', 'clone-src-v1', 'clones-v1'].map(streamFile);
    const r = tsReceive(img, ...chain, holesFull, holesIncr);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expectClean(img);
    const km = mount(kimg);
    try {
      expect(kernelReceive(km.dir, holesFull, holesIncr).status).toBe(0);
      const m = mount(img, 'ro');
      try {
        for (const [sub, manifest] of [['full', 'full-v1.manifest'], ['incr', 'incr-v1.manifest'], ['clone-src', 'clone-src-v1.manifest'], ['clones', 'clones-v1.manifest']]) {
          expect(await manifestOf(join(m.dir, sub!)), sub).toEqual(storedManifest(manifest!));
        }
        for (const sub of ['holes', 'holes2']) expect(await manifestOf(join(m.dir, sub)), sub).toEqual(await manifestOf(join(km.dir, sub)));
      } finally {
        m.umount();
      }
    } finally {
      km.umount();
    }
    expectClean(kimg); // the oracle's own image, for the record
  });

  it('-O ^no-holes through the library: sparse files from a directory get hole extents', async () => {
    const dir = join(work, 'sparse-src');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(join(dir, 'empty-but-big'), '');
    fs.truncateSync(join(dir, 'empty-but-big'), 5 << 20);
    const fd = fs.openSync(join(dir, 'middle'), 'w');
    fs.writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 2 << 20);
    fs.ftruncateSync(fd, 3 << 20);
    fs.closeSync(fd);
    fs.writeFileSync(join(dir, 'small'), 'tiny');
    const img = join(work, 'noholes-rootdir.img');
    const dev = FileDevice.create(img, 256n * MiB);
    try {
      const f = createFilesystem(dev, { growable: false });
      f.sb.incompat_flags &= ~BTRFS_FEATURE_INCOMPAT_NO_HOLES;
      await populateFromDir(dir, new Populator(f, 5n));
      f.commit();
    } finally {
      dev.close();
    }
    const out = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', '5', img], { encoding: 'utf8' });
    expect(out).toMatch(/extent data disk byte 0 nr 0/);
    expectClean(img);
  });

  it('-O ^extref: 300 links in one directory fail as in the kernel (Too many links), the image unchanged', () => {
    const img = join(work, 'noextref.img');
    mkfsBtrfs(img, '256M', '-O', '^extref');
    const links = join(work, 'links.stream');
    fs.writeFileSync(links, linksStream(300));
    const before = sha256(img);
    const r = tsReceive(img, links);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/Too many links/);
    expect(sha256(img)).toBe(before);
    if (mountSkip) return;
    // the kernel's own receive gives up at the same point
    const k = join(work, 'noextref-kernel.img');
    mkfsBtrfs(k, '256M', '-O', '^extref');
    const m = mount(k);
    try {
      const kr = kernelReceive(m.dir, links);
      expect(kr.status).not.toBe(0);
      expect(kr.stderr).toMatch(/Too many links/);
    } finally {
      m.umount();
    }
  });

  it.skipIf(!!mountSkip)('with extref, 300 links are INODE_EXTREF items the kernel and check accept; mkfs --rootdir too', async () => {
    const img = join(work, 'extref.img');
    mkfsBtrfs(img, '256M');
    const links = join(work, 'links.stream');
    fs.writeFileSync(links, linksStream(300));
    expect(tsReceive(img, links).status).toBe(0);
    expectClean(img);
    const dir = join(work, 'links-src');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(join(dir, linkName(0)), 'shared');
    for (let i = 1; i < 300; i++) fs.linkSync(join(dir, linkName(0)), join(dir, linkName(i)));
    const mk = join(work, 'links-mkfs.img');
    execFileSync('node', [BIN, 'mkfs', '-q', '-r', dir, mk]);
    expectClean(mk);
    const m = mount(img, 'ro');
    const mm = mount(mk, 'ro');
    try {
      expect(fs.statSync(join(m.dir, 'links', 'd', linkName(299))).nlink).toBe(300);
      expect(fs.readdirSync(join(m.dir, 'links', 'd'))).toHaveLength(300);
      expect(await manifestOf(mm.dir)).toEqual(await manifestOf(dir));
    } finally {
      mm.umount();
      m.umount();
    }
  });
});

describe('chunk sizes', () => {
  it('follow mkfs.btrfs for the first chunks and the kernel for later ones', () => {
    const sizes = (total: bigint, mkfs: boolean): bigint[] =>
      [BTRFS_BLOCK_GROUP_SYSTEM, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_DATA].map((t) => chunkLength(t, t === BTRFS_BLOCK_GROUP_DATA ? 1 : 2, total, mkfs) / (64n * 1024n));
    const M = 16n; // 64 KiB units per MiB
    // mkfs.btrfs 6.2 (dump-tree -t chunk): system 8M, metadata max(5% DUP, 32M) up to 256M (1G above 50G), data 8M
    expect(sizes(128n * MiB, true)).toEqual([8n * M, 32n * M, 8n * M]);
    expect(sizes(1024n * MiB, true)).toEqual([8n * M, 819n, 8n * M]);
    expect(sizes(100n * 1024n * MiB, true)).toEqual([8n * M, 1024n * M, 8n * M]);
    // the kernel: 10% of the device rounded up to 16M, capped per type
    expect(sizes(256n * MiB, false)).toEqual([32n * M, 32n * M, 32n * M]);
    expect(sizes(1024n * MiB, false)).toEqual([32n * M, 112n * M, 112n * M]);
    expect(sizes(100n * 1024n * MiB, false)).toEqual([32n * M, 1024n * M, 1024n * M]);
  });

  it.skipIf(!!progsSkip)('btrfs-ts mkfs lays out the chunks mkfs.btrfs does', () => {
    const layout = (img: string): string[] =>
      [...execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'chunk', img], { encoding: 'utf8' }).matchAll(/length (\d+) owner \d+ stripe_len \d+ type (\S+)/g)]
        .map((x) => `${x[2]} ${x[1]}`).sort();
    for (const [size, node] of [['128M', '16384'], ['1G', '65536'], ['100G', '16384']] as const) {
      const a = join(work, 'chunks-progs.img');
      const b = join(work, 'chunks-ts.img');
      mkfsBtrfs(a, size, '-n', node);
      fs.rmSync(b, { force: true });
      execFileSync('node', [BIN, 'mkfs', '-q', '-b', size, '-n', node, b]);
      expect(layout(b), `${size} ${node}`).toEqual(layout(a));
      fs.rmSync(a);
      fs.rmSync(b);
    }
  });

  it.skipIf(!!mountSkip)('small images balance: mkfs --rootdir --compress zstd -n 65536 (256 MiB), scrub, full balance', () => {
    const dir = join(work, 'bal-src');
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 30; i++) {
      const buf = Buffer.alloc(100_000);
      for (let j = 0; j < buf.length; j++) buf[j] = i % 2 ? (j * 2654435761 + i) >>> 24 : j % 3;
      fs.writeFileSync(join(dir, `f${i}`), buf);
    }
    const img = join(work, 'bal.img');
    execFileSync('node', [BIN, 'mkfs', '-q', '-r', dir, '--compress', 'zstd', '-n', '65536', '-b', '256M', img]);
    const m = mount(img);
    try {
      const scrub = execFileSync('btrfs', ['scrub', 'start', '-B', m.dir], { encoding: 'utf8' });
      expect(scrub).toMatch(/no errors found/);
      const bal = spawnSync('btrfs', ['balance', 'start', '--full-balance', m.dir], { encoding: 'utf8' });
      expect(bal.status, bal.stderr).toBe(0);
    } finally {
      m.umount();
    }
    expectClean(img);
  });
  // Receive grows a growable image chunk by chunk; grown only by what the chunks need, it ends full and a
  // kernel full balance fails with ENOSPC (as it does on the kernel's own filesystem that full). Each
  // commit that took chunks keeps the room balance needs (chunk-alloc.ts keepRelocationRoom).
  it.skipIf(!!mountSkip)('a receive that grows the image leaves room for a full balance (scrub, full balance, check clean)', () => {
    const img = join(work, 'grown.img');
    execFileSync('node', [BIN, 'mkfs', '-q', '-b', '128M', img]);
    const stream = join(work, 'grown.stream');
    const fd = fs.openSync(stream, 'w');
    const put = (c: SendCommand) => fs.writeSync(fd, encodeCommand(c, 1));
    fs.writeSync(fd, encodeStreamHeader(1));
    put({ cmd: C.BTRFS_SEND_C_SUBVOL, path: b('vol'), uuid: uuid(3), ctransid: 9n });
    const chunk = Buffer.alloc(1 << 20);
    let x = 12345;
    for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((x = (Math.imul(x, 1103515245) + 12345) >>> 0), i);
    for (let f = 0; f < 6; f++) {
      const path = b(`f${f}`);
      put({ cmd: C.BTRFS_SEND_C_MKFILE, path, ino: BigInt(257 + f) });
      for (let i = 0; i < 30; i++) {
        chunk.writeUInt32LE(f * 1000 + i, 0); // every MiB its own bytes
        for (let off = 0; off < chunk.length; off += 49152) {
          put({ cmd: C.BTRFS_SEND_C_WRITE, path, fileOffset: BigInt(i * chunk.length + off), data: chunk.subarray(off, Math.min(off + 49152, chunk.length)) });
        }
      }
    }
    put({ cmd: C.BTRFS_SEND_C_END });
    fs.closeSync(fd);
    const before = fs.statSync(img).size;
    const r = tsReceive(img, stream);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.statSync(img).size).toBeGreaterThan(before); // 180 MiB of data: the image had to grow
    const m = mount(img);
    try {
      const scrub = execFileSync('btrfs', ['scrub', 'start', '-B', m.dir], { encoding: 'utf8' });
      expect(scrub).toMatch(/no errors found/);
      const bal = spawnSync('btrfs', ['balance', 'start', '--full-balance', m.dir], { encoding: 'utf8' });
      expect(bal.status, `${bal.stdout}${bal.stderr}`).toBe(0);
      expect(bal.stdout).toMatch(/had to relocate (\d+) out of \1 chunks/);
    } finally {
      m.umount();
    }
    expectClean(img, '--check-data-csum');
  });
});
