import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readSync, closeSync, rmSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as S from '../src/image/structs.js';

/**
 * Structs are checked two ways: decode real blocks that mkfs.btrfs wrote and compare with what
 * `btrfs inspect-internal dump-tree/dump-super` prints, and re-encode every decoded structure to the
 * exact bytes it came from.
 */

const have = (cmd: string): boolean => {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const HAVE_MKFS = have('mkfs.btrfs');
if (!HAVE_MKFS) console.warn('image-read-structs: mkfs.btrfs not found, skipping real-image checks');

let dir = '';
let img = '';
let fd = -1;
const readAt = (pos: bigint, len: number): Uint8Array => {
  const b = new Uint8Array(len);
  readSync(fd, b, 0, len, Number(pos));
  return b;
};

beforeAll(() => {
  if (!HAVE_MKFS) return;
  dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-structs-'));
  const root = join(dir, 'root');
  mkdirSync(join(root, 'sub'), { recursive: true });
  writeFileSync(join(root, 'small'), 'hello\n');
  writeFileSync(join(root, 'big'), Buffer.alloc(200_000, 7));
  symlinkSync('small', join(root, 'link'));
  try {
    execFileSync('setfattr', ['-n', 'user.k', '-v', 'value', join(root, 'small')]);
  } catch {
    console.warn('image-read-structs: setfattr unavailable, image has no xattr');
  }
  img = join(dir, 'img');
  writeFileSync(img, '');
  execFileSync('truncate', ['-s', '256M', img]);
  execFileSync('mkfs.btrfs', ['-q', '--rootdir', root, img], { stdio: 'ignore' });
  fd = openSync(img, 'r');
});
afterAll(() => {
  if (fd >= 0) closeSync(fd);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('structs round-trip (synthetic)', () => {
  it('inode item, root item, dir items, file extents, extent item, chunk keep every field', () => {
    const ts = (s: number, n: number): S.BtrfsTimespec => ({ sec: BigInt(s), nsec: n });
    const inode: S.BtrfsInodeItem = {
      generation: 7n, transid: 9n, size: 1n << 40n, nbytes: 4096n, block_group: 0n, nlink: 3, uid: 1000, gid: 2000,
      mode: 0o100644, rdev: 0x1234n, flags: S.BTRFS_INODE_NODATASUM | S.BTRFS_INODE_RO_VERITY, sequence: 5n,
      atime: ts(1, 2), ctime: ts(3, 999_999_999), mtime: ts(5, 6), otime: ts(7, 8),
    };
    const enc = S.encodeInodeItem(inode);
    expect(enc.length).toBe(160);
    expect(S.decodeInodeItem(enc)).toEqual(inode);
    const root: S.BtrfsRootItem = {
      inode, generation: 11n, root_dirid: 256n, bytenr: 30425088n, byte_limit: 0n, bytes_used: 16384n, last_snapshot: 3n,
      flags: S.BTRFS_ROOT_SUBVOL_RDONLY, refs: 1, drop_progress: { objectid: 1n, type: 2, offset: 3n }, drop_level: 1, level: 2,
      generation_v2: 11n, uuid: new Uint8Array(16).fill(1), parent_uuid: new Uint8Array(16).fill(2), received_uuid: new Uint8Array(16).fill(3),
      ctransid: 12n, otransid: 13n, stransid: 14n, rtransid: 15n, ctime: ts(1, 1), otime: ts(2, 2), stime: ts(3, 3), rtime: ts(4, 4),
    };
    const renc = S.encodeRootItem(root);
    expect(renc.length).toBe(439);
    expect(S.decodeRootItem(renc)).toEqual(root);
    // a legacy (pre-uuid) root item decodes with zeroed v2 fields
    expect(S.decodeRootItem(renc.subarray(0, 239)).uuid).toEqual(new Uint8Array(16));
    const dirs: S.BtrfsDirItem[] = [
      { location: { objectid: 257n, type: S.BTRFS_INODE_ITEM_KEY, offset: 0n }, transid: 4n, type: S.BTRFS_FT_REG_FILE, name: new TextEncoder().encode('a'), data: new Uint8Array(0) },
      { location: { objectid: 0n, type: 0, offset: 0n }, transid: 4n, type: S.BTRFS_FT_XATTR, name: new TextEncoder().encode('user.x'), data: new Uint8Array([1, 2, 3]) },
    ];
    expect(S.decodeDirItems(S.encodeDirItems(dirs))).toEqual(dirs);
    const fe: S.BtrfsFileExtentItem = {
      generation: 1n, ram_bytes: 131072n, compression: S.BTRFS_COMPRESS_ZSTD, encryption: 0, other_encoding: 0,
      type: S.BTRFS_FILE_EXTENT_REG, disk_bytenr: 13631488n, disk_num_bytes: 8192n, offset: 4096n, num_bytes: 65536n,
    };
    expect(S.encodeFileExtentItem(fe).length).toBe(53);
    expect(S.decodeFileExtentItem(S.encodeFileExtentItem(fe))).toEqual(fe);
    const inl: S.BtrfsFileExtentItem = { ...fe, type: S.BTRFS_FILE_EXTENT_INLINE, compression: 0, disk_bytenr: 0n, disk_num_bytes: 0n, offset: 0n, num_bytes: 0n, ram_bytes: 3n, inline_data: new Uint8Array([9, 8, 7]) };
    expect(S.encodeFileExtentItem(inl).length).toBe(24);
    expect(S.decodeFileExtentItem(S.encodeFileExtentItem(inl))).toEqual(inl);
    const ext: S.BtrfsExtentItem = {
      refs: 2n, generation: 5n, flags: S.BTRFS_EXTENT_FLAG_DATA, inline_refs: [
        { type: S.BTRFS_EXTENT_DATA_REF_KEY, root: 5n, objectid: 257n, offset: 0n, count: 1 },
        { type: S.BTRFS_SHARED_DATA_REF_KEY, parent: 30425088n, count: 1 },
      ],
    };
    expect(S.decodeExtentItem(S.encodeExtentItem(ext), S.BTRFS_EXTENT_ITEM_KEY)).toEqual(ext);
    const tb: S.BtrfsExtentItem = {
      refs: 1n, generation: 5n, flags: S.BTRFS_EXTENT_FLAG_TREE_BLOCK, tree_block_info: { key: { objectid: 256n, type: 1, offset: 0n }, level: 0 },
      inline_refs: [{ type: S.BTRFS_TREE_BLOCK_REF_KEY, root: 5n }],
    };
    expect(S.decodeExtentItem(S.encodeExtentItem(tb), S.BTRFS_EXTENT_ITEM_KEY)).toEqual(tb);
    const refs = [{ index: 2n, name: new Uint8Array([0x61]) }, { index: 3n, name: new Uint8Array([0x62, 0x63]) }];
    expect(S.decodeInodeRefs(S.encodeInodeRefs(refs))).toEqual(refs);
    const xrefs = [{ parent_objectid: 256n, index: 9n, name: new Uint8Array([0xff]) }];
    expect(S.decodeInodeExtrefs(S.encodeInodeExtrefs(xrefs))).toEqual(xrefs);
    expect(S.decodeRootRef(S.encodeRootRef({ dirid: 256n, sequence: 2n, name: new Uint8Array([1]) }))).toEqual({ dirid: 256n, sequence: 2n, name: new Uint8Array([1]) });
    expect(S.decodeUuidItem(S.encodeUuidItem([256n, S.BTRFS_FS_TREE_OBJECTID]))).toEqual([256n, 5n]);
    expect(Array.from(S.decodeCsumItem(S.encodeCsumItem([0xdeadbeef, 1])))).toEqual([0xdeadbeef, 1]);
  });

  it('negative objectids keep all 64 bits and keys order unsigned', () => {
    expect(S.BTRFS_DATA_RELOC_TREE_OBJECTID).toBe(18446744073709551607n);
    expect(S.BTRFS_EXTENT_CSUM_OBJECTID).toBe(18446744073709551606n);
    const k = { objectid: S.BTRFS_EXTENT_CSUM_OBJECTID, type: S.BTRFS_EXTENT_CSUM_KEY, offset: 1n << 63n };
    expect(S.decodeDiskKey(S.encodeDiskKey(k))).toEqual(k);
    expect(S.compareKeys({ objectid: 5n, type: 1, offset: 0n }, k)).toBe(-1);
  });

  it('leaf and node builders produce blocks the parser reads back, with a valid csum', () => {
    const h = { fsid: new Uint8Array(16).fill(0xaa), bytenr: 30408704n, flags: S.BTRFS_HEADER_FLAG_WRITTEN | (S.BTRFS_MIXED_BACKREF_REV << 56n), chunk_tree_uuid: new Uint8Array(16), generation: 3n, owner: 5n };
    const items = [
      { key: { objectid: 256n, type: 1, offset: 0n }, data: new Uint8Array(160).fill(1) },
      { key: { objectid: 256n, type: 12, offset: 256n }, data: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x2e, 0x2e]) },
    ];
    const leaf = S.buildLeaf(h, items, 16384, S.BTRFS_CSUM_TYPE_CRC32);
    expect(S.verifyBlockCsum(leaf, S.BTRFS_CSUM_TYPE_CRC32)).toBe(true);
    const p = S.parseTreeBlock(leaf);
    expect(p.header.nritems).toBe(2);
    expect(p.header.bytenr).toBe(30408704n);
    expect(p.items.map((x) => x.key)).toEqual(items.map((x) => x.key));
    expect(Array.from(p.items[1]!.data)).toEqual(Array.from(items[1]!.data));
    leaf[5000] ^= 1;
    expect(S.verifyBlockCsum(leaf, S.BTRFS_CSUM_TYPE_CRC32)).toBe(false);
    const node = S.buildNode(h, 1, [{ key: items[0]!.key, blockptr: 1n << 33n, generation: 3n }], 16384, S.BTRFS_CSUM_TYPE_CRC32);
    expect(S.parseTreeBlock(node).ptrs[0]!.blockptr).toBe(1n << 33n);
    // out-of-order keys are refused
    expect(() => S.parseTreeBlock(S.buildLeaf(h, [items[1]!, items[0]!], 16384, S.BTRFS_CSUM_TYPE_CRC32))).toThrow(/out of order/);
    // a count of items or pointers past the block's end is refused before any of them is read (the parser
    // reads their fields without a bounds check each); the first key pointer's key is read as parsed
    const nritems = (b: Uint8Array, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(96, v, true);
    const big = S.buildLeaf(h, items, 16384, S.BTRFS_CSUM_TYPE_CRC32);
    nritems(big, Math.floor((16384 - 101) / 25) + 1);
    expect(() => S.parseTreeBlock(big)).toThrow(/nritems \d+ cannot fit/);
    nritems(node, Math.floor((16384 - 101) / 33) + 1);
    expect(() => S.parseTreeBlock(node)).toThrow(/nritems \d+ cannot fit/);
    nritems(node, 1);
    expect(S.parseTreeBlock(node).ptrs).toEqual([{ key: items[0]!.key, blockptr: 1n << 33n, generation: 3n }]);
  });
});

describe.skipIf(!HAVE_MKFS)('structs against mkfs.btrfs images', () => {
  it('superblock decodes like dump-super and re-encodes byte-identically', () => {
    const raw = readAt(S.BTRFS_SUPER_INFO_OFFSET, 4096);
    const sb = S.decodeSuperblock(raw);
    expect(sb.magic).toBe(S.BTRFS_MAGIC);
    expect(S.verifyBlockCsum(raw, S.BTRFS_CSUM_TYPE_CRC32)).toBe(true);
    expect(S.encodeSuperblock(sb)).toEqual(raw);
    const txt = execFileSync('btrfs', ['inspect-internal', 'dump-super', '-f', img], { encoding: 'utf8' });
    const field = (name: string): string => {
      const m = new RegExp(`^${name.replace('.', '\\.')}\\s+(\\S+)`, 'm').exec(txt);
      if (!m) throw new Error(`dump-super has no ${name}`);
      return m[1]!;
    };
    expect(sb.generation).toBe(BigInt(field('generation')));
    expect(sb.root).toBe(BigInt(field('root')));
    expect(sb.chunk_root).toBe(BigInt(field('chunk_root')));
    expect(sb.total_bytes).toBe(BigInt(field('total_bytes')));
    expect(sb.bytes_used).toBe(BigInt(field('bytes_used')));
    expect(sb.nodesize).toBe(Number(field('nodesize')));
    expect(sb.sectorsize).toBe(Number(field('sectorsize')));
    expect(sb.sys_chunk_array_size).toBe(Number(field('sys_array_size')));
    expect(sb.incompat_flags).toBe(BigInt(field('incompat_flags')));
    expect(sb.compat_ro_flags).toBe(BigInt(field('compat_ro_flags')));
    expect(S.formatUuid(sb.fsid)).toBe(field('fsid'));
    expect(S.formatUuid(sb.dev_item.uuid)).toBe(field('dev_item.uuid'));
    expect(sb.dev_item.bytes_used).toBe(BigInt(field('dev_item.bytes_used')));
    expect(sb.super_roots[0]!.tree_root).toBe(BigInt(/backup_tree_root:\s+(\d+)/.exec(txt)![1]!));
    const sys = S.decodeSysChunkArray(sb.sys_chunk_array, sb.sys_chunk_array_size);
    const stripes = [...txt.matchAll(/stripe (\d+) devid 1 offset (\d+)/g)].map((m) => BigInt(m[2]!));
    expect(sys.flatMap((c) => c.chunk.stripes.map((s) => s.offset))).toEqual(stripes.slice(0, sys.flatMap((c) => c.chunk.stripes).length));
    // bytes past sys_chunk_array_size may hold stale chunks from mkfs's bootstrap, so compare the used part
    const re = S.encodeSysChunkArray(sys);
    expect(re.size).toBe(sb.sys_chunk_array_size);
    expect(re.array.subarray(0, re.size)).toEqual(sb.sys_chunk_array.subarray(0, re.size));
  });

  it('every tree block decodes like dump-tree and every item re-encodes to its own bytes', () => {
    const sb = S.decodeSuperblock(readAt(S.BTRFS_SUPER_INFO_OFFSET, 4096));
    const chunks: { start: bigint; len: bigint; phys: bigint }[] = [];
    const addChunk = (k: S.BtrfsKey, c: S.BtrfsChunk): void => {
      chunks.push({ start: k.offset, len: c.length, phys: c.stripes[0]!.offset });
    };
    for (const c of S.decodeSysChunkArray(sb.sys_chunk_array, sb.sys_chunk_array_size)) addChunk(c.key, c.chunk);
    const map = (l: bigint): bigint => {
      const c = chunks.find((x) => l >= x.start && l < x.start + x.len);
      if (!c) throw new Error(`unmapped ${l}`);
      return c.phys + (l - c.start);
    };
    const seen = new Map<bigint, { nritems: number; generation: bigint; offs: number[] }>();
    let itemsChecked = 0;
    const walk = (bytenr: bigint, onItem?: (it: S.LeafItem) => void): void => {
      const raw = readAt(map(bytenr), sb.nodesize);
      expect(S.verifyBlockCsum(raw, S.BTRFS_CSUM_TYPE_CRC32)).toBe(true);
      const tb = S.parseTreeBlock(raw);
      expect(tb.header.bytenr).toBe(bytenr);
      expect(tb.header.fsid).toEqual(sb.fsid);
      if (tb.header.level > 0) {
        const built = S.buildNode(tb.header, tb.header.level, tb.ptrs, sb.nodesize, S.BTRFS_CSUM_TYPE_CRC32);
        const used = S.BTRFS_HEADER_SIZE + S.BTRFS_KEY_PTR_SIZE * tb.ptrs.length;
        expect(built.subarray(32, used)).toEqual(raw.subarray(32, used));
        for (const p of tb.ptrs) walk(p.blockptr, onItem);
        return;
      }
      const offs: number[] = [];
      for (const it of tb.items) {
        offs.push(it.data.byteOffset - raw.byteOffset - S.BTRFS_HEADER_SIZE);
        onItem?.(it);
        checkItem(it);
        itemsChecked++;
      }
      seen.set(bytenr, { nritems: tb.header.nritems, generation: tb.header.generation, offs });
      // the free gap between item headers and item data may hold stale bytes: blank it before comparing
      const clean = raw.slice();
      const dataStart = tb.items.length ? Math.min(...tb.items.map((x) => x.data.byteOffset - raw.byteOffset)) : sb.nodesize;
      clean.fill(0, S.BTRFS_HEADER_SIZE + S.BTRFS_ITEM_SIZE * tb.items.length, dataStart);
      const built = S.buildLeaf(tb.header, tb.items, sb.nodesize, S.BTRFS_CSUM_TYPE_CRC32);
      expect(S.verifyBlockCsum(built, S.BTRFS_CSUM_TYPE_CRC32)).toBe(true);
      expect(built.subarray(32)).toEqual(clean.subarray(32));
    };
    walk(sb.chunk_root, (it) => {
      if (it.key.type === S.BTRFS_CHUNK_ITEM_KEY) addChunk(it.key, S.decodeChunk(it.data));
    });
    const roots: bigint[] = [];
    walk(sb.root, (it) => {
      if (it.key.type === S.BTRFS_ROOT_ITEM_KEY) roots.push(S.decodeRootItem(it.data).bytenr);
    });
    for (const r of roots) walk(r);
    expect(itemsChecked).toBeGreaterThan(30);

    const txt = execFileSync('btrfs', ['inspect-internal', 'dump-tree', img], { encoding: 'utf8' });
    const leaves = [...txt.matchAll(/^leaf (\d+) items (\d+) free space \d+ generation (\d+)/gm)];
    expect(leaves.length).toBeGreaterThan(4);
    for (const m of leaves) {
      const got = seen.get(BigInt(m[1]!));
      expect(got, `leaf ${m[1]} visited`).toBeDefined();
      expect(got!.nritems).toBe(Number(m[2]));
      expect(got!.generation).toBe(BigInt(m[3]!));
    }
    const dumpedOffs = [...txt.matchAll(/itemoff (\d+) itemsize/g)].map((m) => Number(m[1]));
    const ourOffs = [...seen.values()].flatMap((x) => x.offs);
    expect(ourOffs.sort()).toEqual(dumpedOffs.sort());
  });
});

/** Decode + re-encode per item type must give back the exact bytes. */
function checkItem(it: S.LeafItem): void {
  const d = it.data;
  switch (it.key.type) {
    case S.BTRFS_INODE_ITEM_KEY: expect(S.encodeInodeItem(S.decodeInodeItem(d))).toEqual(d); break;
    case S.BTRFS_INODE_REF_KEY:
      if (it.key.objectid !== S.BTRFS_FS_TREE_OBJECTID || d.length !== 17) expect(S.encodeInodeRefs(S.decodeInodeRefs(d))).toEqual(d);
      break;
    case S.BTRFS_DIR_ITEM_KEY: case S.BTRFS_DIR_INDEX_KEY: case S.BTRFS_XATTR_ITEM_KEY:
      expect(S.encodeDirItems(S.decodeDirItems(d))).toEqual(d); break;
    case S.BTRFS_EXTENT_DATA_KEY: expect(S.encodeFileExtentItem(S.decodeFileExtentItem(d))).toEqual(d); break;
    case S.BTRFS_ROOT_ITEM_KEY: expect(S.encodeRootItem(S.decodeRootItem(d))).toEqual(d); break;
    case S.BTRFS_ROOT_REF_KEY: case S.BTRFS_ROOT_BACKREF_KEY: expect(S.encodeRootRef(S.decodeRootRef(d))).toEqual(d); break;
    case S.BTRFS_EXTENT_ITEM_KEY: case S.BTRFS_METADATA_ITEM_KEY:
      expect(S.encodeExtentItem(S.decodeExtentItem(d, it.key.type))).toEqual(d); break;
    case S.BTRFS_EXTENT_DATA_REF_KEY: expect(S.encodeExtentDataRef(S.decodeExtentDataRef(d))).toEqual(d); break;
    case S.BTRFS_BLOCK_GROUP_ITEM_KEY: expect(S.encodeBlockGroupItem(S.decodeBlockGroupItem(d))).toEqual(d); break;
    case S.BTRFS_FREE_SPACE_INFO_KEY: expect(S.encodeFreeSpaceInfo(S.decodeFreeSpaceInfo(d))).toEqual(d); break;
    case S.BTRFS_DEV_EXTENT_KEY: expect(S.encodeDevExtent(S.decodeDevExtent(d))).toEqual(d); break;
    case S.BTRFS_DEV_ITEM_KEY: expect(S.encodeDevItem(S.decodeDevItem(d))).toEqual(d); break;
    case S.BTRFS_CHUNK_ITEM_KEY: expect(S.encodeChunk(S.decodeChunk(d))).toEqual(d); break;
    case S.BTRFS_EXTENT_CSUM_KEY: expect(S.encodeCsumItem(S.decodeCsumItem(d))).toEqual(d); break;
  }
}
