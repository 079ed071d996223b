import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageError } from '../src/errors.js';
import { runMkfs } from '../src/cli/commands/mkfs.js';
import { BtrfsImage } from '../src/image/read/index.js';
import * as S from '../src/image/structs.js';
import { withImageFile } from '../src/io/image-read-file.js';
import { crc32cRaw } from '../src/util/crc32c.js';
import { tmpDir } from './image-write-helpers.js';

/**
 * The four btrfs checksum algorithms of src/image/structs/csum.ts against published test vectors, and
 * a btrfs-ts image of each type read back (the reader detects a damaged data sector and tree block).
 * The kernel and btrfs check judge these images in csum-kernel.test.ts.
 */
const work = tmpDir('btrfs-ts-csum-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const abc = new TextEncoder().encode('abc');
// digests as stored on disk: crc32c and xxhash64 are little-endian integers, sha256 and blake2b byte strings
const VECTORS: [string, string][] = [
  ['crc32c', 'b73f4b36'], // crc32c("abc") = 0x364b3fb7
  ['xxhash', '990977adf52cbc44'], // XXH64("abc", seed 0) = 0x44bc2cf5ad770999
  ['sha256', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
  ['blake2', 'bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319'], // BLAKE2b-256("abc"), RFC 7693 parameters
];

describe('checksum algorithms', () => {
  for (const [name, hex] of VECTORS) {
    it(`${name}: the published digest of "abc", stored as the kernel stores it`, async () => {
      const type = S.csumTypeByName(name)!;
      const algo = await S.loadCsum(type);
      expect(algo.size).toBe(hex.length / 2);
      const out = new Uint8Array(40).fill(0xee);
      algo.digestInto(abc, out, 3);
      expect(Buffer.from(out.subarray(3, 3 + algo.size)).toString('hex')).toBe(hex);
      expect(out[2]).toBe(0xee);
      expect(out[3 + algo.size]).toBe(0xee);
    });
  }

  it('BLAKE2b-256 is not a truncated BLAKE2b-512 (why node:crypto cannot serve)', () => {
    expect(createHash('blake2b512').update(abc).digest('hex').slice(0, 64)).not.toBe(VECTORS[3]![1]);
  });

  it('a block checksum of each type verifies, and fails after a flipped byte or under another type', async () => {
    const block = randomBytes(16384);
    for (const type of [0, 1, 2, 3]) {
      await S.loadCsum(type);
      S.setBlockCsum(block, type);
      expect(S.verifyBlockCsum(block, type)).toBe(true);
      expect(S.verifyBlockCsum(block, (type + 1) % 4)).toBe(false);
      // the unused tail of the 32-byte field is zero
      expect(block.subarray(S.csumSizeOf(type)!, 32).every((b) => b === 0)).toBe(true);
      block[5000]! ^= 1;
      expect(S.verifyBlockCsum(block, type)).toBe(false);
      block[5000]! ^= 1;
    }
  });

  it('mkfs.btrfs spellings map to csum types; unknown names and types are refused', async () => {
    expect([S.csumTypeByName('crc32c'), S.csumTypeByName('xxhash'), S.csumTypeByName('sha256'), S.csumTypeByName('blake2')]).toEqual([0, 1, 2, 3]);
    expect([S.csumTypeByName('XXHASH64'), S.csumTypeByName('blake2b')]).toEqual([1, 3]);
    expect(S.csumTypeByName('md5')).toBeUndefined();
    await expect(S.loadCsum(7)).rejects.toThrow(/csum_type 7 is not one of/);
    expect(() => S.csumAlgo(7)).toThrow(ImageError);
  });
});

describe('firstBadSector (data extents)', () => {
  // node:crypto has no crc32c: the sums are made by the algorithm checked against its vector above
  const crc = (b: Uint8Array): number => { const o = new Uint8Array(4); S.csumAlgo(S.BTRFS_CSUM_TYPE_CRC32).digestInto(b, o, 0); return new DataView(o.buffer).getUint32(0, true); };
  for (const [label, sectors, len] of [['whole 4 KiB sectors', 37, 37 * 4096], ['a short last sector', 5, 4 * 4096 + 100]] as const) {
    it(`crc32c, ${label}: -1 when all match (raw CRCs filled), else the first bad or missing sector`, async () => {
      await S.loadCsum(S.BTRFS_CSUM_TYPE_CRC32);
      const algo = S.csumAlgo(S.BTRFS_CSUM_TYPE_CRC32);
      const data = new Uint8Array(randomBytes(sectors * 4096));
      const sums = new Uint8Array(4 * sectors);
      for (let i = 0; i < sectors; i++) new DataView(sums.buffer).setUint32(4 * i, crc(data.subarray(i * 4096, Math.min(len, (i + 1) * 4096))), true);
      const have = new Uint8Array(sectors).fill(1);
      const raw = new Uint32Array(sectors);
      expect(S.firstBadSector(algo, data, len, 4096, sums, have, raw)).toBe(-1);
      expect(S.firstBadSector(algo, data, len, 4096, sums, have)).toBe(-1);
      if (len === sectors * 4096) {
        // raw (seed 0, no inversion) CRC of each sector: the stored checksum is its complement under seed ~0
        for (let i = 0; i < sectors; i++) expect(raw[i]).toBe(crc32cRaw(data.subarray(i * 4096, (i + 1) * 4096)));
      }
      const bad = sectors - 2;
      data[bad * 4096 + 17]! ^= 0x40;
      expect(S.firstBadSector(algo, data, len, 4096, sums, have, raw)).toBe(bad);
      expect(S.firstBadSector(algo, data, len, 4096, sums, have)).toBe(bad);
      have[1] = 0;
      expect(S.firstBadSector(algo, data, len, 4096, sums, have)).toBe(1);
    });
  }
});

describe('btrfs-ts images of every checksum type', () => {
  const root = path.join(work, 'root');
  // 3 MiB: more checksums than one EXTENT_CSUM item holds (sha256/blake2: 506 at nodesize 16K)
  const data = randomBytes(3 << 20);
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(root, 'big'), data);
  fs.writeFileSync(path.join(root, 'small'), 'inline\n');

  const readAll = async (img: BtrfsImage, p: string): Promise<Buffer> => {
    const parts: Uint8Array[] = [];
    for await (const c of img.readFile(await img.resolve(p))) parts.push(c);
    return Buffer.concat(parts);
  };
  /** Physical offset of the first byte of /big's data and of its fs tree leaf. */
  const where = async (img: BtrfsImage): Promise<{ data: bigint; leaf: bigint }> => {
    const loc = await img.resolve('big');
    const r = img.reader;
    const fsTree = await r.tree(loc.root);
    const it = await r.trees.lookup(fsTree, { objectid: loc.ino, type: S.BTRFS_EXTENT_DATA_KEY, offset: 0n });
    const x = S.decodeFileExtentItem(it!.data);
    return { data: r.chunks.map(x.disk_bytenr, 1, 'data')[0]!, leaf: r.chunks.map(fsTree.bytenr, 1, 'leaf')[0]! };
  };

  for (const [name] of VECTORS) {
    it(`${name}: made by btrfs-ts mkfs, read back; a damaged data sector or tree block is detected`, async () => {
      const img = path.join(work, `${name}.img`);
      await runMkfs(img, { rootdir: root, csum: name, metadata: 'single', quiet: true });
      const { data: dataAt, leaf: leafAt } = await withImageFile(img, async (src) => {
        const bi = await BtrfsImage.open(src);
        expect(bi.superblock.csum_type).toBe(S.csumTypeByName(name));
        expect(Buffer.compare(await readAll(bi, 'big'), data)).toBe(0);
        expect((await readAll(bi, 'small')).toString()).toBe('inline\n');
        return where(bi);
      });
      const flip = (at: bigint): void => {
        const fd = fs.openSync(img, 'r+');
        const b = Buffer.alloc(1);
        fs.readSync(fd, b, 0, 1, Number(at) + 100);
        b[0]! ^= 0xff;
        fs.writeSync(fd, b, 0, 1, Number(at) + 100);
        fs.closeSync(fd);
      };
      flip(dataAt);
      await withImageFile(img, async (src) => {
        const bi = await BtrfsImage.open(src);
        await expect(readAll(bi, 'big')).rejects.toThrow(/data checksum mismatch at logical/);
      });
      flip(leafAt);
      await withImageFile(img, async (src) => {
        const bi = await BtrfsImage.open(src);
        await expect(readAll(bi, 'big')).rejects.toThrow(/checksum mismatch/);
        await expect(bi.resolve('small')).rejects.toThrow(/tree block \d+ \(tree 5\): checksum mismatch/);
      });
    }, 300_000);
  }
});
