import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync, linkSync } from 'node:fs';
import { join } from 'node:path';
import { btrfsNameHash } from '../../src/util/crc32c.js';
import * as S from '../../src/image/structs.js';
import { editLeaf, editSuperblock, patchSuperblockBytes, withImage } from './image-mutate.js';

/**
 * Images damaged on purpose, made from one mkfs.btrfs --rootdir image: each mutation copies the base and
 * changes it the way a bug, a crash or an attacker could, with checksums recomputed so the damage gets
 * past the block checks into the item parsers. Deterministic: the "random" byte flips come from a seeded
 * generator, so a failure names a reproducible image.
 */

const te = new TextEncoder();

/** The tree every base image holds (names chosen so two of them can be made to collide). */
export function makeBaseTree(root: string): void {
  mkdirSync(join(root, 'd', 'sub'), { recursive: true });
  for (let i = 0; i < 5; i++) writeFileSync(join(root, 'd', `f${i}`), `file ${i}\n`);
  writeFileSync(join(root, 'big'), Buffer.alloc(200_000, 0x61));
  writeFileSync(join(root, 'aa'), 'first\n');
  writeFileSync(join(root, 'bb'), 'second\n');
  writeFileSync(join(root, 'sparse'), '');
  execFileSync('truncate', ['-s', '3M', join(root, 'sparse')]);
  writeFileSync(join(root, 'd', 'sub', 'deep'), 'deep\n');
  symlinkSync('d/f1', join(root, 'sym'));
  linkSync(join(root, 'd', 'f2'), join(root, 'hard'));
}

export function makeBaseImage(dir: string, extraMkfs: string[] = []): string {
  const root = join(dir, 'base-root');
  mkdirSync(root, { recursive: true });
  makeBaseTree(root);
  const img = join(dir, 'base.img');
  writeFileSync(img, '');
  execFileSync('truncate', ['-s', '160M', img]);
  execFileSync('mkfs.btrfs', ['-q', '-f', ...extraMkfs, '--rootdir', root, img], { stdio: 'ignore' });
  return img;
}

/** xorshift32: small, seeded, the same everywhere. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

async function inodeOf(path: string, name: string): Promise<bigint> {
  return withImage(path, async (img) => (await img.resolve(name)).ino);
}

const fsTree = S.BTRFS_FS_TREE_OBJECTID;
const inodeKey = (ino: bigint): S.BtrfsKey => ({ objectid: ino, type: S.BTRFS_INODE_ITEM_KEY, offset: 0n });

/** Changes fields of one inode item. */
async function editInode(path: string, ino: bigint, edit: (i: S.BtrfsInodeItem) => void): Promise<void> {
  await editLeaf(path, fsTree, inodeKey(ino), (items) => {
    const it = items.find((x) => S.compareKeys(x.key, inodeKey(ino)) === 0)!;
    const inode = S.decodeInodeItem(it.data);
    edit(inode);
    it.data = S.encodeInodeItem(inode);
    return items;
  });
}

/** Renames entry `from` of the top directory to `to` (same length) in its DIR_ITEM, DIR_INDEX and INODE_REF. */
async function renameEntry(path: string, from: string, to: string): Promise<void> {
  const ino = await inodeOf(path, from);
  const dirIno = 256n;
  const a = te.encode(from), b = te.encode(to);
  const rename = (d: S.BtrfsDirItem): S.BtrfsDirItem => (Buffer.from(d.name).equals(Buffer.from(a)) ? { ...d, name: b } : d);
  await editLeaf(path, fsTree, inodeKey(dirIno), (items) => {
    const out: S.LeafItem[] = [];
    let moved: S.BtrfsDirItem[] = [];
    for (const it of items) {
      if (it.key.objectid === dirIno && it.key.type === S.BTRFS_DIR_ITEM_KEY && it.key.offset === BigInt(btrfsNameHash(a))) {
        const ds = S.decodeDirItems(it.data);
        moved = ds.filter((d) => Buffer.from(d.name).equals(Buffer.from(a))).map(rename);
        const rest = ds.filter((d) => !Buffer.from(d.name).equals(Buffer.from(a)));
        if (rest.length) out.push({ key: it.key, data: S.encodeDirItems(rest) });
        continue;
      }
      if (it.key.objectid === dirIno && it.key.type === S.BTRFS_DIR_INDEX_KEY) {
        out.push({ key: it.key, data: S.encodeDirItems(S.decodeDirItems(it.data).map(rename)) });
        continue;
      }
      if (it.key.objectid === ino && it.key.type === S.BTRFS_INODE_REF_KEY && it.key.offset === dirIno) {
        out.push({ key: it.key, data: S.encodeInodeRefs(S.decodeInodeRefs(it.data).map((r) => (Buffer.from(r.name).equals(Buffer.from(a)) ? { ...r, name: b } : r))) });
        continue;
      }
      out.push(it);
    }
    const hashKey = { objectid: dirIno, type: S.BTRFS_DIR_ITEM_KEY, offset: BigInt(btrfsNameHash(b)) };
    const existing = out.find((x) => S.compareKeys(x.key, hashKey) === 0);
    // the renamed entry joins the name-hash item after the entry already there: the kernel finds that one first
    if (existing) existing.data = S.encodeDirItems([...S.decodeDirItems(existing.data), ...moved]);
    else out.push({ key: hashKey, data: S.encodeDirItems(moved) });
    return out;
  });
}

/** Replaces bytes of the inline extent of `name` (its symlink target or small content). */
async function patchInline(path: string, name: string, at: number, byte: number): Promise<void> {
  const ino = await inodeOf(path, name);
  const key = { objectid: ino, type: S.BTRFS_EXTENT_DATA_KEY, offset: 0n };
  await editLeaf(path, fsTree, key, (items) => {
    const it = items.find((x) => S.compareKeys(x.key, key) === 0)!;
    it.data[21 + at] = byte; // inline data follows the 21-byte file extent header
    return items;
  });
}

/**
 * Flips `count` seeded random bits in item data of the leaves of tree `tree` (not headers: the damage
 * reaches the parsers). A leaf shared with another tree (a snapshot's) is damaged for both.
 */
export async function flipTreeItems(path: string, tree: bigint, seed: number, count: number): Promise<void> {
  const next = rng(seed);
  const keys = await withImage(path, async (img) => {
    const out: S.BtrfsKey[] = [];
    const t = await img.reader.tree(tree);
    for await (const it of img.reader.trees.iterate(t, { objectid: 0n, type: 0, offset: 0n }, { objectid: (1n << 64n) - 1n, type: 255, offset: (1n << 64n) - 1n })) {
      if (it.data.length) out.push(it.key);
    }
    return out;
  });
  for (let i = 0; i < count; i++) {
    const key = keys[next() % keys.length]!;
    await editLeaf(path, tree, key, (items) => {
      const it = items.find((x) => S.compareKeys(x.key, key) === 0)!;
      it.data[next() % it.data.length]! ^= 1 << (next() % 8);
      return items;
    });
  }
}

export interface Mutation {
  name: string;
  /** What a reader should make of it (for the report; the test checks only "ok or one-line error"). */
  what: string;
  apply(path: string): Promise<void> | void;
}

const U64 = (1n << 64n) - 1n;

export const MUTATIONS: Mutation[] = [
  { name: 'pristine', what: 'the base image itself', apply: () => {} },
  { name: 'dup-name', what: 'bb renamed to aa: two entries named aa, one DIR_ITEM holding both', apply: (p) => renameEntry(p, 'bb', 'aa') },
  { name: 'symlink-nul', what: 'NUL byte inside a symlink target', apply: (p) => patchInline(p, 'sym', 1, 0) },
  // btrfs-image dumps zero inline data: progs' fsck-tests/034 and 012 hold such symlinks
  { name: 'symlink-zeroed', what: 'a symlink target of NUL bytes only', apply: async (p) => { for (let i = 0; i < 4; i++) await patchInline(p, 'sym', i, 0); } },
  { name: 'huge-isize', what: 'i_size 2^64-4096 on a 3 MiB sparse file', apply: async (p) => editInode(p, await inodeOf(p, 'sparse'), (i) => { i.size = U64 - 4095n; }) },
  { name: 'big-sparse', what: 'i_size 2^40 on a sparse file (legal for the kernel)', apply: async (p) => editInode(p, await inodeOf(p, 'sparse'), (i) => { i.size = 1n << 40n; }) },
  { name: 'dir-isize', what: 'wrong i_size on the top directory', apply: (p) => editInode(p, 256n, (i) => { i.size += 6n; }) },
  { name: 'bad-mode', what: 'file type bits 0 in a mode', apply: async (p) => editInode(p, await inodeOf(p, 'aa'), (i) => { i.mode = 0o644; }) },
  { name: 'nodesize-128k', what: 'superblock nodesize 131072', apply: (p) => editSuperblock(p, (sb) => { sb.nodesize = 131072; sb.leafsize = 131072; }) },
  { name: 'sectorsize-odd', what: 'superblock sectorsize 6144', apply: (p) => editSuperblock(p, (sb) => { sb.sectorsize = 6144; }) },
  { name: 'stripesize-0', what: 'superblock stripesize 0', apply: (p) => editSuperblock(p, (sb) => { sb.stripesize = 0; }) },
  { name: 'num-devices-2', what: 'superblock num_devices 2', apply: (p) => editSuperblock(p, (sb) => { sb.num_devices = 2n; }) },
  { name: 'root-level-9', what: 'superblock root_level 9', apply: (p) => editSuperblock(p, (sb) => { sb.root_level = 9; }) },
  { name: 'sys-array-huge', what: 'sys_chunk_array_size 4000', apply: (p) => editSuperblock(p, (sb) => { sb.sys_chunk_array_size = 4000; }) },
  { name: 'csum-type-7', what: 'unknown csum type', apply: (p) => patchSuperblockBytes(p, (_r, v) => v.setUint16(0xc4, 7, true)) },
  { name: 'super-flags-changing', what: 'super flag CHANGING_BG_TREE (a half-converted block group tree)', apply: (p) => editSuperblock(p, (sb) => { sb.flags |= 1n << 38n; }) },
  { name: 'bytes-used-0', what: 'bytes_used 0 in the superblock', apply: (p) => editSuperblock(p, (sb) => { sb.bytes_used = 0n; }) },
  // root items a receive must refuse before it writes (write/open-checks.ts, checkRootItem)
  { name: 'root-item-level', what: 'fs tree ROOT_ITEM level 7', apply: (p) => editRootItem(p, { level: 7 }) },
  { name: 'root-item-generation', what: 'fs tree ROOT_ITEM generation 2^40, newer than the filesystem', apply: (p) => editRootItem(p, { generation: 1n << 40n }) },
  { name: 'root-item-bytenr', what: 'fs tree ROOT_ITEM bytenr 12345 (not sector aligned)', apply: (p) => editRootItem(p, { bytenr: 12345n }) },
  { name: 'root-item-dirid', what: 'fs tree ROOT_ITEM root_dirid 300', apply: (p) => editRootItem(p, { root_dirid: 300n }) },
  { name: 'no-block-group', what: 'the data chunk lost its block group item', apply: (p) => withImage(p, async (img) => {
    const data = img.reader.chunks.all().find((c) => (c.type & S.BTRFS_BLOCK_GROUP_DATA) !== 0n)!;
    return { objectid: data.start, type: S.BTRFS_BLOCK_GROUP_ITEM_KEY, offset: data.length };
  }).then((key) => editLeaf(p, S.BTRFS_EXTENT_TREE_OBJECTID, key, (items) => items.filter((x) => S.compareKeys(x.key, key) !== 0))) },
  // what a filesystem made before Linux 3.12 and not mounted since looks like: no UUID tree
  { name: 'no-uuid-tree', what: 'no UUID tree (its root item gone, as before Linux 3.12)', apply: (p) => {
    const key = { objectid: S.BTRFS_UUID_TREE_OBJECTID, type: S.BTRFS_ROOT_ITEM_KEY, offset: 0n };
    return editLeaf(p, S.BTRFS_ROOT_TREE_OBJECTID, key, (items) => items.filter((x) => S.compareKeys(x.key, key) !== 0));
  } },
  ...[1, 2, 3, 4, 5, 6].map((seed): Mutation => ({ name: `flip-${seed}`, what: `4 random bit flips in fs tree items (seed ${seed})`, apply: (p) => flipTreeItems(p, fsTree, seed, 4) })),
];

/** Changes fields of the fs tree's ROOT_ITEM (the leaf's checksum is made again). */
function editRootItem(path: string, fields: Partial<S.BtrfsRootItem>): Promise<void> {
  return editLeaf(path, S.BTRFS_ROOT_TREE_OBJECTID, { objectid: fsTree, type: S.BTRFS_ROOT_ITEM_KEY, offset: 0n }, (items) => {
    const it = items.find((x) => x.key.objectid === fsTree && x.key.type === S.BTRFS_ROOT_ITEM_KEY)!;
    it.data = S.encodeRootItem({ ...S.decodeRootItem(it.data), ...fields });
    return items;
  });
}

export async function makeDamaged(base: string, dir: string, m: Mutation): Promise<string> {
  const out = join(dir, `${m.name}.img`);
  execFileSync('cp', ['--sparse=always', base, out]);
  await m.apply(out);
  return out;
}
