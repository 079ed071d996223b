import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageError } from '../src/errors.js';
import { BtrfsImage, type ImageSource } from '../src/image/read/index.js';
import * as S from '../src/image/structs.js';
import { type FileImageSource, openImageFile } from '../src/io/image-read-file.js';

/**
 * Hand-made damage on a mkfs.btrfs image (no root needed): cycles and cross-links in trees, broken leaf
 * layout, a dead primary superblock, an unsupported RAID profile. Each must end in an ImageError that
 * names the block, never a hang or a crash.
 */

const HAVE_MKFS = spawnSync('mkfs.btrfs', ['--version'], { stdio: 'ignore' }).error === undefined;
if (!HAVE_MKFS) console.warn('image-read-corrupt: mkfs.btrfs not installed, skipping');

let dir = '';
let file: FileImageSource;
let img: BtrfsImage;

/** The image with some physical ranges replaced. */
function overlay(base: ImageSource, patches: Map<bigint, Uint8Array>): ImageSource {
  return {
    size: base.size?.bind(base),
    async read(offset, len) {
      const out = await base.read(offset, len);
      for (const [at, bytes] of patches) {
        const end = at + BigInt(bytes.length);
        if (end <= offset || at >= offset + BigInt(len)) continue;
        for (let i = 0; i < bytes.length; i++) {
          const p = at + BigInt(i) - offset;
          if (p >= 0n && p < BigInt(len)) out[Number(p)] = bytes[i]!;
        }
      }
      return out;
    },
  };
}

beforeAll(async () => {
  if (!HAVE_MKFS) return;
  dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-corrupt-'));
  const root = join(dir, 'root');
  mkdirSync(join(root, 'd'), { recursive: true });
  for (let i = 0; i < 5; i++) writeFileSync(join(root, 'd', `f${i}`), `file ${i}\n`);
  writeFileSync(join(root, 'big'), Buffer.alloc(100_000, 0x61));
  symlinkSync('d/f1', join(root, 'sym'));
  const p = join(dir, 'img');
  writeFileSync(p, '');
  execFileSync('truncate', ['-s', '256M', p]);
  execFileSync('mkfs.btrfs', ['-q', '--rootdir', root, p], { stdio: 'ignore' });
  file = await openImageFile(p);
  img = await BtrfsImage.open(file);
});
afterAll(async () => {
  await file?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Patches for logical `bytenr` on every copy. */
function at(bytenr: bigint, bytes: Uint8Array): [bigint, Uint8Array][] {
  return img.reader.chunks.map(bytenr, bytes.length, 'test').map((p) => [p, bytes]);
}

/** Rewrites the root tree leaf with FS_TREE's root item pointing at `bytenr`/`level`. */
async function rootTreeWithFsRoot(bytenr: bigint, level: number, generation: bigint): Promise<[bigint, Uint8Array][]> {
  const sb = img.superblock;
  const rt = await img.reader.trees.readBlock(sb.root, { level: sb.root_level, generation: sb.generation, owner: 1n });
  expect(rt.header.level).toBe(0);
  const items = rt.items.map((it) => {
    if (it.key.objectid !== 5n || it.key.type !== S.BTRFS_ROOT_ITEM_KEY) return it;
    const ri = S.decodeRootItem(it.data);
    return { key: it.key, data: S.encodeRootItem({ ...ri, bytenr, level, generation }) };
  });
  return at(sb.root, S.buildLeaf(rt.header, items, sb.nodesize, S.BTRFS_CSUM_TYPE_CRC32));
}

async function fsRootLeaf(): Promise<S.TreeBlock> {
  const t = await img.reader.tree(5n);
  const b = await img.reader.trees.readBlock(t.bytenr, { level: t.level, generation: t.generation, owner: 5n });
  expect(b.header.level, 'test image fs tree is a single leaf').toBe(0);
  return b;
}

/** A free nodesize block in the metadata chunk (its tail is unused on a fresh image). */
function spareBlock(): bigint {
  const meta = img.reader.chunks.all().find((c) => (c.type & S.BTRFS_BLOCK_GROUP_METADATA) !== 0n)!;
  return meta.start + meta.length - BigInt(img.superblock.nodesize);
}

async function walkAll(im: BtrfsImage): Promise<void> {
  const { imageTreeSource } = await import('../src/image/read/tree-source.js');
  for await (const e of imageTreeSource(im, await im.root()).entries()) {
    if (e.type === 'file') for await (const c of e.readContent()) void c;
  }
}

describe.skipIf(!HAVE_MKFS)('corrupt images', () => {
  it('sanity: the undamaged image walks cleanly', async () => {
    await walkAll(img);
  });

  it('a node pointing at itself is refused by the level check (no loop)', async () => {
    const leaf = await fsRootLeaf();
    const n = spareBlock();
    const sb = img.superblock;
    const node = S.buildNode({ ...leaf.header, bytenr: n }, 1, [{ key: leaf.items[0]!.key, blockptr: n, generation: leaf.header.generation }], sb.nodesize, S.BTRFS_CSUM_TYPE_CRC32);
    const im = await BtrfsImage.open(overlay(file, new Map([...at(n, node), ...(await rootTreeWithFsRoot(n, 1, leaf.header.generation))])));
    const err = await walkAll(im).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toMatch(new RegExp(`tree block ${n} \\(tree 5\\): level 1, expected 0`));
  });

  it('a block referenced twice in one tree is refused', async () => {
    const leaf = await fsRootLeaf();
    const n = spareBlock();
    const k2 = { ...leaf.items[leaf.items.length - 1]!.key };
    const ptrs = [
      { key: leaf.items[0]!.key, blockptr: leaf.header.bytenr, generation: leaf.header.generation },
      { key: k2, blockptr: leaf.header.bytenr, generation: leaf.header.generation },
    ];
    const node = S.buildNode({ ...leaf.header, bytenr: n }, 1, ptrs, img.superblock.nodesize, S.BTRFS_CSUM_TYPE_CRC32);
    const im = await BtrfsImage.open(overlay(file, new Map([...at(n, node), ...(await rootTreeWithFsRoot(n, 1, leaf.header.generation))])));
    // path lookups trip over the first-key check; a full iteration reaches the visited-set check
    await expect(walkAll(im)).rejects.toThrow(/first key|referenced twice/);
    const min = { objectid: 0n, type: 0, offset: 0n };
    const max = { objectid: (1n << 64n) - 1n, type: 255, offset: (1n << 64n) - 1n };
    const err = await (async () => {
      for await (const it of im.reader.trees.iterate(await im.reader.tree(5n), min, max)) void it;
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toContain(`tree block ${leaf.header.bytenr} (tree 5): referenced twice`);
  });

  it('a stale pointer (generation mismatch) and a block at the wrong address are named', async () => {
    const leaf = await fsRootLeaf();
    const stale = await BtrfsImage.open(overlay(file, new Map(await rootTreeWithFsRoot(leaf.header.bytenr, 0, leaf.header.generation + 1n))));
    await expect(walkAll(stale)).rejects.toThrow(new RegExp(`tree block ${leaf.header.bytenr} \\(tree 5\\): .*generation ${leaf.header.generation}, parent expects`));
    const n = spareBlock();
    const copy = S.buildLeaf(leaf.header, leaf.items, img.superblock.nodesize, S.BTRFS_CSUM_TYPE_CRC32); // still says bytenr = old address
    const moved = await BtrfsImage.open(overlay(file, new Map([...at(n, copy), ...(await rootTreeWithFsRoot(n, 0, leaf.header.generation))])));
    await expect(walkAll(moved)).rejects.toThrow(new RegExp(`tree block ${n} \\(tree 5\\): .*header bytenr is ${leaf.header.bytenr}`));
  });

  it('a leaf whose item data overlaps is refused even with a valid checksum', async () => {
    const leaf = await fsRootLeaf();
    const raw = S.buildLeaf(leaf.header, leaf.items, img.superblock.nodesize, S.BTRFS_CSUM_TYPE_CRC32);
    // item 1's offset field (at header + 25 + 17) is bumped by 1
    const dv = new DataView(raw.buffer);
    const off = S.BTRFS_HEADER_SIZE + S.BTRFS_ITEM_SIZE + 17;
    dv.setUint32(off, dv.getUint32(off, true) + 1, true);
    S.setBlockCsum(raw, S.BTRFS_CSUM_TYPE_CRC32);
    const im = await BtrfsImage.open(overlay(file, new Map(at(leaf.header.bytenr, raw))));
    await expect(walkAll(im)).rejects.toThrow(new RegExp(`tree block ${leaf.header.bytenr} \\(tree 5\\): .*item 1 data`));
  });

  it('a dead primary superblock falls back to the 64 MiB mirror; all dead is an error', async () => {
    const junk = new Uint8Array(4096).fill(0x42);
    const im = await BtrfsImage.open(overlay(file, new Map([[65536n, junk]])));
    expect(im.superblock.bytenr).toBe(64n << 20n);
    await walkAll(im);
    await expect(BtrfsImage.open(overlay(file, new Map([[65536n, junk], [64n << 20n, junk]]))))
      .rejects.toThrow(/no valid superblock: superblock at 65536: bad magic.*superblock at 67108864: bad magic/);
  });

  it('RAID profiles are refused clearly', async () => {
    const sb = { ...img.superblock };
    const sys = S.decodeSysChunkArray(sb.sys_chunk_array, sb.sys_chunk_array_size);
    sys[0]!.chunk.type = S.BTRFS_BLOCK_GROUP_SYSTEM | S.BTRFS_BLOCK_GROUP_RAID1;
    sb.sys_chunk_array = S.encodeSysChunkArray(sys).array;
    const raw = S.encodeSuperblock(sb);
    await expect(BtrfsImage.open(overlay(file, new Map([[65536n, raw]])))).rejects.toThrow(/profile flags 0x10; only SINGLE and DUP/);
  });
});

describe.skipIf(!HAVE_MKFS)('mutation fuzz over tree blocks (csum recomputed, so the parsers see the damage)', () => {
  it('every mutated image either reads or fails with a BtrfsTsError, promptly', async () => {
    const { BtrfsTsError } = await import('../src/errors.js');
    const { imageTreeSource } = await import('../src/image/read/tree-source.js');
    const sb = img.superblock;
    const blocks: bigint[] = [sb.root, sb.chunk_root, (await img.reader.tree(5n)).bytenr];
    const originals = await Promise.all(blocks.map(async (b) => src(b)));
    async function src(b: bigint): Promise<Uint8Array> {
      return file.read(img.reader.chunks.map(b, sb.nodesize, 'fuzz')[0]!, sb.nodesize);
    }
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const outcomes = { ok: 0, diagnosed: 0 };
    for (let iter = 0; iter < 300; iter++) {
      const which = rnd(blocks.length);
      const raw = originals[which]!.slice();
      const h = S.decodeHeader(raw);
      // aim at the bytes that matter: header fields, item headers, and item data at the end
      const used = S.BTRFS_HEADER_SIZE + h.nritems * S.BTRFS_ITEM_SIZE;
      for (let k = 1 + rnd(3); k > 0; k--) {
        const zone = rnd(3);
        const at = zone === 0 ? 48 + rnd(S.BTRFS_HEADER_SIZE - 48) : zone === 1 ? S.BTRFS_HEADER_SIZE + rnd(used - S.BTRFS_HEADER_SIZE) : sb.nodesize - 1 - rnd(1500);
        raw[at] = raw[at]! ^ (1 << rnd(8));
      }
      S.setBlockCsum(raw, S.BTRFS_CSUM_TYPE_CRC32);
      const patched = overlay(file, new Map(at(blocks[which]!, raw)));
      try {
        const im = await BtrfsImage.open(patched);
        for await (const e of imageTreeSource(im, await im.root()).entries()) {
          if (e.type !== 'file') continue;
          let n = 0;
          for await (const c of e.readContent()) if ((n += c.length) > 1 << 24) break;
        }
        await im.listSubvolumes();
        outcomes.ok++;
      } catch (err) {
        if (!(err instanceof BtrfsTsError)) throw new Error(`iteration ${iter} (block ${blocks[which]}): undiagnosed ${String(err)}`, { cause: err });
        outcomes.diagnosed++;
      }
    }
    expect(outcomes.diagnosed).toBeGreaterThan(50);
  }, 60_000);
});
