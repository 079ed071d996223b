import type { ImageReader } from '../image/read/image.js';
import type { TreeRoot } from '../image/read/tree.js';
import {
  BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_FILE_EXTENT_PREALLOC, type BtrfsFileExtentItem, decodeFileExtentItem,
} from '../image/structs.js';
import { U64_MAX } from '../image/structs/constants.js';

/** Reads as zeros: a hole (disk_bytenr 0) or a preallocated extent. */
export function isZeroExtent(fe: BtrfsFileExtentItem): boolean {
  return fe.type === BTRFS_FILE_EXTENT_PREALLOC || (fe.type !== BTRFS_FILE_EXTENT_INLINE && fe.disk_bytenr === 0n);
}

/** Where an item's file range ends: an inline extent fills its sector. */
export function extentEnd(key: bigint, fe: BtrfsFileExtentItem, sectorsize: number): bigint {
  const ss = BigInt(sectorsize);
  if (fe.type === BTRFS_FILE_EXTENT_INLINE) return key + ((fe.ram_bytes + ss - 1n) / ss) * ss;
  return key + fe.num_bytes;
}

/** The file extent items of inode `ino` from the one holding `from` on, with their ranges. */
async function* itemsFrom(img: ImageReader, tree: TreeRoot, ino: bigint, from: bigint, ss: number) {
  const hit = await img.trees.lookupLE(tree, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: from });
  const start = hit && hit.key.objectid === ino && hit.key.type === BTRFS_EXTENT_DATA_KEY ? hit.key.offset : from;
  for await (const it of img.trees.iterate(tree, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: start }, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: U64_MAX })) {
    const fe = decodeFileExtentItem(it.data);
    yield { start: it.key.offset, end: extentEnd(it.key.offset, fe, ss), fe };
  }
}

/**
 * is_extent_unchanged: whether the parent's file already has, over the range of the sent item at `key`,
 * the same bytes — the same disk extent at the same place, or zeros (holes, prealloc, past its size)
 * where the item reads as zeros. Then the receiver's copy needs nothing there.
 */
export async function parentHasSame(
  img: ImageReader, parentTree: TreeRoot, ino: bigint, key: bigint, fe: BtrfsFileExtentItem, size: bigint, oldSize: bigint, ss: number,
  atKey?: BtrfsFileExtentItem,
): Promise<boolean> {
  if (fe.type === BTRFS_FILE_EXTENT_INLINE) return false;
  const zero = isZeroExtent(fe);
  let end = key + fe.num_bytes < size ? key + fe.num_bytes : size;
  // past the parent's size the receiver's file reads zeros: fine for a hole, not for data
  if (end > oldSize) {
    if (!zero) return false;
    end = oldSize;
  }
  let pos = key;
  if (pos >= end) return true;
  // the parent's item at `key` (`atKey`, the other side of the diff's change) alone decides when it covers
  // the range: what the walk below would find first, without the search
  if (atKey && covers(key, atKey, end, ss)) {
    if (zero) return isZeroExtent(atKey);
    return atKey.type === fe.type && atKey.disk_bytenr === fe.disk_bytenr && atKey.compression === fe.compression && atKey.offset === fe.offset;
  }
  for await (const p of itemsFrom(img, parentTree, ino, key, ss)) {
    if (p.end <= pos) continue;
    if (p.start >= end) break;
    if (p.start > pos && !zero) return false; // an implied hole in the parent where the item has data
    if (zero) {
      if (!isZeroExtent(p.fe)) return false;
    } else if (p.fe.type !== fe.type || p.fe.disk_bytenr !== fe.disk_bytenr || p.fe.compression !== fe.compression ||
      p.fe.offset - p.start !== fe.offset - key) {
      return false;
    }
    pos = p.end;
    if (pos >= end) return true;
  }
  return zero;
}

/** Whether the item `fe` keyed at `key` covers [key, end), end > key, on its own. */
function covers(key: bigint, fe: BtrfsFileExtentItem, end: bigint, ss: number): boolean {
  const e = extentEnd(key, fe, ss);
  return e > key && e >= end;
}

/**
 * The parts of [from, to) that no file extent item of `ino` covers in `tree` (implied holes). `atFrom`:
 * the tree's item keyed `from`, when the caller has it (nothing is uncovered where it covers the range).
 */
export async function uncovered(
  img: ImageReader, tree: TreeRoot, ino: bigint, from: bigint, to: bigint, ss: number, atFrom?: BtrfsFileExtentItem,
): Promise<[bigint, bigint][]> {
  const out: [bigint, bigint][] = [];
  let pos = from;
  if (pos >= to || (atFrom && covers(from, atFrom, to, ss))) return out;
  for await (const it of itemsFrom(img, tree, ino, from, ss)) {
    if (it.end <= pos) continue;
    if (it.start >= to) break;
    if (it.start > pos) out.push([pos, it.start]);
    pos = it.end;
    if (pos >= to) return out;
  }
  out.push([pos, to]);
  return out;
}
