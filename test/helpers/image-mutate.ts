import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { BtrfsImage } from '../../src/image/read/index.js';
import type { TreeRoot } from '../../src/image/read/tree.js';
import * as S from '../../src/image/structs.js';
import { openImageFile } from '../../src/io/image-read-file.js';

/**
 * Damage on purpose, so the damage reaches the item parsers: items of a leaf are edited and the leaf is
 * rebuilt with its checksum recomputed and written to every copy (DUP), or superblock fields are changed
 * with the superblock's checksum recomputed. Only for test images; the leaf keeps its first key (the
 * parent's pointer names it).
 */

export type ItemEditor = (items: S.LeafItem[]) => S.LeafItem[];

function pwrite(path: string, at: bigint, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, Number(at));
  } finally {
    closeSync(fd);
  }
}

export function pread(path: string, at: bigint, len: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const b = new Uint8Array(len);
    readSync(fd, b, 0, len, Number(at));
    return b;
  } finally {
    closeSync(fd);
  }
}

/** Opens the image read-only, runs fn, closes it. */
export async function withImage<T>(path: string, fn: (img: BtrfsImage) => Promise<T>): Promise<T> {
  const src = await openImageFile(path);
  try {
    return await fn(await BtrfsImage.open(src));
  } finally {
    await src.close();
  }
}

/** Bytenr of the leaf of `root` that holds (or would hold) `key`. */
async function leafOf(img: BtrfsImage, root: TreeRoot, key: S.BtrfsKey): Promise<S.TreeBlock> {
  let tb = await img.reader.trees.readBlock(root.bytenr, { level: root.level, generation: root.generation, owner: root.id });
  while (tb.header.level > 0) {
    let i = 0;
    while (i + 1 < tb.ptrs.length && S.compareKeys(tb.ptrs[i + 1]!.key, key) <= 0) i++;
    const p = tb.ptrs[i]!;
    tb = await img.reader.trees.readBlock(p.blockptr, { level: tb.header.level - 1, generation: p.generation, firstKey: p.key, owner: root.id });
  }
  return tb;
}

/** Rewrites the leaf of tree `treeId` holding `key` with `edit` applied to its items (copies of them). */
export async function editLeaf(path: string, treeId: bigint, key: S.BtrfsKey, edit: ItemEditor): Promise<void> {
  const patches = await withImage(path, async (img) => {
    const root = treeId === S.BTRFS_ROOT_TREE_OBJECTID ? img.reader.rootTree : await img.reader.tree(treeId);
    const leaf = await leafOf(img, root, key);
    const items = edit(leaf.items.map((it) => ({ key: { ...it.key }, data: it.data.slice() })));
    items.sort((a, b) => S.compareKeys(a.key, b.key));
    const bytes = S.buildLeaf(leaf.header, items, img.superblock.nodesize, img.superblock.csum_type);
    return img.reader.chunks.map(leaf.header.bytenr, bytes.length, 'test leaf').map((p) => [p, bytes] as const);
  });
  for (const [at, bytes] of patches) pwrite(path, at, bytes);
}

/** Changes the primary superblock (and its checksum); mirrors are left alone unless `mirrors` is set. */
export function editSuperblock(path: string, edit: (sb: S.BtrfsSuperBlock) => void, mirrors = false): void {
  for (let i = 0; i < (mirrors ? S.BTRFS_SUPER_MIRROR_MAX : 1); i++) {
    const at = S.btrfsSbOffset(i);
    const raw = pread(path, at, S.BTRFS_SUPER_INFO_SIZE);
    if (S.decodeSuperblock(raw).magic !== S.BTRFS_MAGIC) continue;
    const sb = S.decodeSuperblock(raw);
    edit(sb);
    const out = S.encodeSuperblock(sb);
    S.setBlockCsum(out, sb.csum_type);
    pwrite(path, at, out);
  }
}

/** Raw bytes of the superblock at `at` changed by `edit` (for fields encodeSuperblock normalises), checksum recomputed. */
export function patchSuperblockBytes(path: string, edit: (raw: Uint8Array, view: DataView) => void): void {
  const at = S.btrfsSbOffset(0);
  const raw = pread(path, at, S.BTRFS_SUPER_INFO_SIZE);
  const type = S.decodeSuperblock(raw).csum_type;
  edit(raw, new DataView(raw.buffer, raw.byteOffset, raw.byteLength));
  S.setBlockCsum(raw, type);
  pwrite(path, at, raw);
}

/** Flips one byte of an item's data in the leaf holding `key` (checksum recomputed). */
export async function flipItemByte(path: string, treeId: bigint, key: S.BtrfsKey, at: number, xor = 0xff): Promise<void> {
  await editLeaf(path, treeId, key, (items) => {
    const it = items.find((x) => S.compareKeys(x.key, key) === 0);
    if (!it) throw new Error(`no item ${S.formatKey(key)} in tree ${treeId}`);
    it.data[at % it.data.length]! ^= xor;
    return items;
  });
}
