import {
  BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE, type BtrfsKey, compareDiskKeys, diskKeyAt, type LeafItem, type TreeBlock,
} from '../structs.js';

/**
 * A leaf's keys and items read where they lie in its bytes (TreeBlock.raw / view), for the readers that
 * search, walk or compare leaves: an item object is made only for an item handed out, and the leaves in
 * the block cache stay bytes (parseTreeBlock checked their structure and key order).
 */

/** `k` as its 17 disk bytes (objectid, type, offset), in `into` or a new view: compared with compareDiskKeys. */
export function diskKey(k: BtrfsKey, into = new DataView(new ArrayBuffer(17))): DataView {
  into.setBigUint64(0, k.objectid, true);
  into.setUint8(8, k.type);
  into.setBigUint64(9, k.offset, true);
  return into;
}

const itemAt = (i: number): number => BTRFS_HEADER_SIZE + i * BTRFS_ITEM_SIZE;

/** Item `i`'s key against `k` (diskKey): <0, 0 or >0. */
export function compareLeafKey(tb: TreeBlock, i: number, k: DataView): number {
  return compareDiskKeys(tb.view, itemAt(i), k, 0);
}

/** Item `i` of leaf `a` against item `j` of leaf `b`, by key. */
export function compareLeafKeys(a: TreeBlock, i: number, b: TreeBlock, j: number): number {
  return compareDiskKeys(a.view, itemAt(i), b.view, itemAt(j));
}

export function leafKey(tb: TreeBlock, i: number): BtrfsKey {
  return diskKeyAt(tb.view, itemAt(i));
}

/** Item `i`'s data: a view into the block. */
export function leafData(tb: TreeBlock, i: number): Uint8Array {
  const p = itemAt(i);
  const start = BTRFS_HEADER_SIZE + tb.view.getUint32(p + 17, true);
  return tb.raw.subarray(start, start + tb.view.getUint32(p + 21, true));
}

export function leafItem(tb: TreeBlock, i: number): LeafItem {
  return { key: leafKey(tb, i), data: leafData(tb, i) };
}

const compareBytes = Buffer.prototype.compare;

/** Whether item `i` of `a` and item `j` of `b` hold the same bytes (compared in place). */
export function sameLeafData(a: TreeBlock, i: number, b: TreeBlock, j: number): boolean {
  const p = itemAt(i);
  const q = itemAt(j);
  const size = a.view.getUint32(p + 21, true);
  if (size !== b.view.getUint32(q + 21, true)) return false;
  const x = BTRFS_HEADER_SIZE + a.view.getUint32(p + 17, true);
  const y = BTRFS_HEADER_SIZE + b.view.getUint32(q + 17, true);
  // Buffer#compare with ranges: a memcmp, no view made
  return compareBytes.call(a.raw, b.raw, y, y + size, x, x + size) === 0;
}

/** Item `i`'s data size. */
export function leafSize(tb: TreeBlock, i: number): number {
  return tb.view.getUint32(itemAt(i) + 21, true);
}

/**
 * Whether items [i, i + n) of `a` hold the same bytes as items [j, j + n) of `b`, item for item, given
 * that each pair has the same size: a leaf's items lie back to back below its item headers (parseTreeBlock
 * checked it), so both runs are one range each, compared at once.
 */
export function sameLeafRuns(a: TreeBlock, i: number, b: TreeBlock, j: number, n: number): boolean {
  const last = n - 1;
  const x = BTRFS_HEADER_SIZE + a.view.getUint32(itemAt(i + last) + 17, true);
  const y = BTRFS_HEADER_SIZE + b.view.getUint32(itemAt(j + last) + 17, true);
  const xEnd = BTRFS_HEADER_SIZE + a.view.getUint32(itemAt(i) + 17, true) + a.view.getUint32(itemAt(i) + 21, true);
  const yEnd = BTRFS_HEADER_SIZE + b.view.getUint32(itemAt(j) + 17, true) + b.view.getUint32(itemAt(j) + 21, true);
  return xEnd - x === yEnd - y && compareBytes.call(a.raw, b.raw, y, yEnd, x, xEnd) === 0;
}

/** Slot of the last item keyed <= `k` (diskKey), -1 when every key is greater: slotLE without item objects. */
export function leafSlotLE(tb: TreeBlock, k: DataView): number {
  let lo = 0;
  let hi = tb.header.nritems;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareLeafKey(tb, mid, k) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}
