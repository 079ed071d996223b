import { BTRFS_CSUM_TREE_OBJECTID, BTRFS_CSUM_TYPE_CRC32, BTRFS_EXTENT_CSUM_KEY, BTRFS_EXTENT_CSUM_OBJECTID } from '../structs/constants.js';
import { BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE } from '../structs/tree-block.js';
import { csumAlgo } from '../structs/csum.js';
import { CRC_SECTOR, btrfsCsumFromRaw } from '../../util/crc32c-combine.js';
import type { FilesystemModel } from './model.js';
import { RangeSet } from './ranges.js';
import type { Key } from './items.js';

/**
 * Data checksums in the csum tree: EXTENT_CSUM items of one checksum per sector, keyed by the logical
 * address of their first sector, at most maxCsumsPerItem each (the kernel's file-item.c).
 */

/** Most checksums one EXTENT_CSUM item may hold (MAX_CSUM_ITEMS in the kernel). */
export function maxCsumsPerItem(nodesize: number, csumSize = 4): number {
  return Math.floor((nodesize - BTRFS_HEADER_SIZE - 2 * BTRFS_ITEM_SIZE) / csumSize) - 1;
}

const csumKey = (bytenr: bigint): Key => ({ objectid: BTRFS_EXTENT_CSUM_OBJECTID, type: BTRFS_EXTENT_CSUM_KEY, offset: bytenr });

/**
 * Checksum the on-disk bytes of data at `bytenr` (whole sectors; a short tail is zero-padded as on disk)
 * with the image's csum_type. `fresh`: the space was allocated in this transaction (allocData), so it
 * holds no checksums to replace (freeing an extent drops its checksums) and none are looked for.
 * `rawCrcs`: the raw CRC32C (seed 0, no inversion: crc32c-combine.ts) of the data's first 4 KiB sectors,
 * which the caller already has — receive, from the stream's own CRC check — so those bytes are not read
 * a second time where the checksums are crc32c of 4 KiB sectors; other images hash every sector.
 */
export function addDataCsums(fs: FilesystemModel, bytenr: bigint, bytes: Uint8Array, rawCrcs?: Uint32Array, fresh = false): void {
  const ss = fs.sectorsize;
  const algo = csumAlgo(fs.sb.csum_type);
  const cs = algo.size;
  const n = Math.ceil(bytes.length / ss);
  if (!fresh && csumsIn(fs, bytenr, BigInt(n * ss))) deleteCsums(fs, bytenr, BigInt(n * ss));
  const csums = new Uint8Array(n * cs);
  const k = algo.type === BTRFS_CSUM_TYPE_CRC32 && ss === CRC_SECTOR && rawCrcs !== undefined ? Math.min(n, rawCrcs.length) : 0;
  // little-endian by hand: a DataView over the new array costs more than the loop (it makes its buffer)
  for (let i = 0; i < k; i++) {
    const v = btrfsCsumFromRaw(rawCrcs![i]!);
    csums[4 * i] = v;
    csums[4 * i + 1] = v >>> 8;
    csums[4 * i + 2] = v >>> 16;
    csums[4 * i + 3] = v >>> 24;
  }
  for (let i = k; i < n; i++) {
    let sector = bytes.subarray(i * ss, (i + 1) * ss);
    if (sector.length < ss) {
      const padded = new Uint8Array(ss);
      padded.set(sector);
      sector = padded;
    }
    algo.digestInto(sector, csums, i * cs);
  }
  putDataCsums(fs, bytenr, csums);
}

/**
 * Store checksums (the image's csum type, one per sector from `bytenr`) whose range holds none now.
 * Like btrfs_csum_file_blocks, they first extend the item that ends where they start, while it has room
 * (data allocated one extent after another — a receive — then fills items in place); the rest become
 * items of their own. What is still cut short is merged at commit (normalizeCsumTree).
 */
export function putDataCsums(fs: FilesystemModel, bytenr: bigint, csums: Uint8Array): void {
  const ss = fs.sectorsize;
  const cs = csumAlgo(fs.sb.csum_type).size;
  fs.csumTouched.add(bytenr, bytenr + BigInt(csums.length / cs) * BigInt(ss));
  const max = maxCsumsPerItem(fs.nodesize, cs) * cs;
  const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
  let off = 0;
  const prev = bytenr > 0n ? t.last(csumKey(bytenr - 1n), csumKey(0n)) : undefined;
  if (prev && prev.data.length < max && prev.key.offset + BigInt(prev.data.length / cs) * BigInt(ss) === bytenr) {
    off = Math.min(csums.length, max - prev.data.length);
    // (a view of a small new array makes V8 move it off its heap: none when all of it fits, the common case)
    t.put(prev.key, grown(fs, prev.data, off === csums.length ? csums : csums.subarray(0, off), max));
  }
  for (; off < csums.length; off += max) {
    t.put(csumKey(bytenr + BigInt((off / cs) * ss)), csums.slice(off, off + max));
  }
}

/**
 * `item` followed by `more`, as a new payload for the csum item. A receive appends a few checksums per
 * extent to the same item until it is full (16 KiB): a new array each time copied the whole item per
 * extent (8 KiB on average, and a fresh 16 KiB allocation for V8 to account and free). So the payload is
 * a view of the start of a larger buffer (fs.csumRoom), and the next append writes past its end: bytes
 * no view handed out covers, since `used` is the longest one — payloads are never changed in place. The
 * buffer doubles when full; any other payload (read back, merged, of another item) starts a new one.
 */
function grown(fs: FilesystemModel, item: Uint8Array, more: Uint8Array, max: number): Uint8Array {
  const len = item.length;
  const n = len + more.length;
  let room = fs.csumRoom;
  // lengths first: `.buffer` of a small array V8 keeps on its heap would move it off the heap
  if (room === undefined || room.used !== len || room.buf.length < n || item.byteOffset !== 0 || item.buffer !== room.buf.buffer) {
    room = { buf: new Uint8Array(Math.min(max, Math.max(2 * n, 512))), used: len };
    room.buf.set(item);
    fs.csumRoom = room;
  }
  room.buf.set(more, len);
  room.used = n;
  return room.buf.subarray(0, n);
}

/**
 * Whether any csum item covers part of [bytenr, bytenr+len): one search (items never overlap, so only
 * the last one starting below the end can reach into the range) — new data goes where none are, and
 * deleteCsums costs two searches and a walk.
 */
function csumsIn(fs: FilesystemModel, bytenr: bigint, len: bigint): boolean {
  const it = fs.tree(BTRFS_CSUM_TREE_OBJECTID).last(csumKey(bytenr + len - 1n), csumKey(0n));
  if (!it) return false;
  const cs = BigInt(csumAlgo(fs.sb.csum_type).size);
  return it.key.offset + (BigInt(it.data.length) / cs) * BigInt(fs.sectorsize) > bytenr;
}

/** Remove checksums of [bytenr, bytenr+len), splitting items that straddle the range. */
export function deleteCsums(fs: FilesystemModel, bytenr: bigint, len: bigint): void {
  const ss = BigInt(fs.sectorsize);
  const cs = BigInt(csumAlgo(fs.sb.csum_type).size);
  const end = bytenr + len;
  const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
  const before = t.last(csumKey(bytenr), csumKey(0n));
  const hits = t.range(csumKey(bytenr), csumKey(end - 1n));
  if (before && (hits.length === 0 || hits[0]!.key.offset !== before.key.offset)) hits.unshift(before);
  for (const it of hits) {
    const s = it.key.offset;
    const e = s + (BigInt(it.data.length) / cs) * ss;
    if (e <= bytenr || s >= end) continue;
    t.delete(it.key);
    if (s < bytenr) t.put(csumKey(s), it.data.slice(0, Number(((bytenr - s) / ss) * cs)));
    if (e > end) t.put(csumKey(end), it.data.slice(Number(((end - s) / ss) * cs)));
  }
}

/**
 * Merge the csum items of the data checksummed since the last commit (fs.csumTouched) with each other
 * and with the items right before and after them, into runs of at most maxCsumsPerItem checksums, as the
 * kernel keeps them (it extends the previous item when it can). Only those windows are read and
 * rewritten: the cost follows the data written, not the size of the csum tree.
 */
export function normalizeCsumTree(fs: FilesystemModel): void {
  for (const [s, e] of fs.csumTouched) normalizeCsumWindow(fs, s, e);
  fs.csumTouched = new RangeSet();
}

function normalizeCsumWindow(fs: FilesystemModel, start: bigint, end: bigint): void {
  const ss = BigInt(fs.sectorsize);
  const cs = csumAlgo(fs.sb.csum_type).size;
  const max = maxCsumsPerItem(fs.nodesize, cs) * cs;
  const t = fs.tree(BTRFS_CSUM_TREE_OBJECTID);
  const span = (bytes: number): bigint => BigInt(bytes / cs) * ss;
  const prev = start > 0n ? t.last(csumKey(start - 1n), csumKey(0n)) : undefined;
  const from = prev && prev.key.offset + span(prev.data.length) === start ? prev.key : csumKey(start);
  // taken whole before any change: the window is as big as the change, and the tree is not walked while it changes
  const items = [...t.entries(from, csumKey(end))];
  let i = 0;
  while (i < items.length) {
    // one run of contiguous items
    let j = i + 1;
    let runEnd = items[i]!.key.offset + span(items[i]!.data.length);
    while (j < items.length && items[j]!.key.offset === runEnd) runEnd += span(items[j++]!.data.length);
    const run = items.slice(i, j);
    i = j;
    if (run.every((it, k) => it.data.length === max || k === run.length - 1)) continue; // cut right already
    const bytes = new Uint8Array(run.reduce((n, it) => n + it.data.length, 0));
    let o = 0;
    for (const it of run) {
      t.delete(it.key);
      bytes.set(it.data, o);
      o += it.data.length;
    }
    let at = run[0]!.key.offset;
    for (let off = 0; off < bytes.length; off += max) {
      const piece = bytes.slice(off, off + max);
      t.put(csumKey(at), piece);
      at += span(piece.length);
    }
  }
}
