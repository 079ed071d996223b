import { ImageError } from '../../errors.js';
import {
  U64_MAX, BTRFS_FREE_SPACE_BITMAP_KEY, BTRFS_FREE_SPACE_EXTENT_KEY, BTRFS_FREE_SPACE_INFO_KEY, BTRFS_FREE_SPACE_USING_BITMAPS,
} from '../structs/constants.js';
import { decodeFreeSpaceInfo, encodeFreeSpaceInfo } from '../structs/tree-items.js';
import type { Key } from './items.js';
import { RangeSet } from './ranges.js';
import type { TreeHandle } from './tree-state.js';

/**
 * The free space tree of one block group, read and changed in place (kernel free-space-tree.c): a
 * FREE_SPACE_INFO item (extent count, flags) and the free ranges, as FREE_SPACE_EXTENT items or as
 * FREE_SPACE_BITMAP items (one bit per sector). A change touches only the items around the ranges it
 * adds or removes. A block group kept in bitmaps is converted to extents on its first change here (what
 * convert_free_space_to_extents does; btrfs check and the kernel accept either form at any count, and the
 * kernel converts back past its threshold on its next change).
 */
export interface BlockGroupRange {
  logical: bigint;
  length: bigint;
}

const extentKey = (start: bigint, len: bigint): Key => ({ objectid: start, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: len });
const infoKey = (bg: BlockGroupRange): Key => ({ objectid: bg.logical, type: BTRFS_FREE_SPACE_INFO_KEY, offset: bg.length });

/** The free ranges of a block group as its free space tree records them (undefined: no info item). */
export function loadFreeRanges(fst: TreeHandle, bg: BlockGroupRange, sectorsize: number): RangeSet | undefined {
  const info = fst.get(infoKey(bg));
  if (!info) return undefined;
  const end = bg.logical + bg.length;
  const free = new RangeSet();
  const ss = BigInt(sectorsize);
  for (const it of fst.entries({ objectid: bg.logical, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: 0n }, { objectid: end - 1n, type: BTRFS_FREE_SPACE_BITMAP_KEY, offset: U64_MAX })) {
    const s = it.key.objectid;
    const e = s + it.key.offset;
    if (e > end) throw new ImageError('IMAGE_BAD_FREE_SPACE', `free space item at ${s} (${it.key.offset} bytes) runs past its block group ending at ${end}`, { offset: s });
    if (it.key.type === BTRFS_FREE_SPACE_EXTENT_KEY) free.add(s, e);
    else if (it.key.type === BTRFS_FREE_SPACE_BITMAP_KEY) {
      const bits = Number(it.key.offset / ss);
      if (it.data.length * 8 < bits) throw new ImageError('IMAGE_BAD_FREE_SPACE', `free space bitmap at ${s} holds ${it.data.length * 8} bits for ${bits} sectors`, { offset: s });
      let runStart = -1;
      for (let i = 0; i <= bits; i++) {
        const set = i < bits && (it.data[i >> 3]! & (1 << (i & 7))) !== 0;
        if (set && runStart < 0) runStart = i;
        else if (!set && runStart >= 0) {
          free.add(s + BigInt(runStart) * ss, s + BigInt(i) * ss);
          runStart = -1;
        }
      }
    }
  }
  return free;
}

/** A block group new in this transaction: one free extent covering it. */
export function addBlockGroupFreeSpace(fst: TreeHandle, bg: BlockGroupRange): void {
  fst.put(infoKey(bg), encodeFreeSpaceInfo({ extent_count: 1, flags: 0 }));
  fst.put(extentKey(bg.logical, bg.length), new Uint8Array(0));
}

/**
 * Apply one commit round's change to a block group: `used` ranges (allocated) leave the free space,
 * then `freed` ranges join it. Every range must lie in the block group; a used range must be free and a
 * freed one used (anything else means the bookkeeping is wrong: an internal error, before any write).
 */
export function updateBlockGroupFreeSpace(fst: TreeHandle, bg: BlockGroupRange, used: RangeSet, freed: RangeSet, sectorsize: number): void {
  const raw = fst.get(infoKey(bg));
  if (!raw) throw new ImageError('IMAGE_BAD_FREE_SPACE', `block group ${bg.logical} has no free space info item`, { offset: bg.logical });
  let info = decodeFreeSpaceInfo(raw);
  if (info.flags & BTRFS_FREE_SPACE_USING_BITMAPS) info = toExtents(fst, bg, info.flags, sectorsize);
  let count = info.extent_count;
  for (const [s, e] of used) count += removeFree(fst, bg, s, e);
  for (const [s, e] of freed) count += addFree(fst, bg, s, e);
  fst.put(infoKey(bg), encodeFreeSpaceInfo({ extent_count: count, flags: info.flags }));
}

function toExtents(fst: TreeHandle, bg: BlockGroupRange, flags: number, sectorsize: number): { extent_count: number; flags: number } {
  const free = loadFreeRanges(fst, bg, sectorsize)!;
  const end = bg.logical + bg.length;
  for (const it of fst.range({ objectid: bg.logical, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: 0n }, { objectid: end - 1n, type: BTRFS_FREE_SPACE_BITMAP_KEY, offset: U64_MAX })) {
    fst.delete(it.key);
  }
  for (const [s, e] of free) fst.put(extentKey(s, e - s), new Uint8Array(0));
  return { extent_count: free.count, flags: flags & ~BTRFS_FREE_SPACE_USING_BITMAPS };
}

/** The free extents overlapping [s, e): the one starting before s (if it reaches past s) and those inside. */
function overlapping(fst: TreeHandle, bg: BlockGroupRange, s: bigint, e: bigint): Key[] {
  const out: Key[] = [];
  const before = fst.last({ objectid: s - 1n, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: U64_MAX }, { objectid: bg.logical, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: 0n });
  if (before && before.key.type === BTRFS_FREE_SPACE_EXTENT_KEY && before.key.objectid + before.key.offset > s) out.push(before.key);
  for (const it of fst.entries({ objectid: s, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: 0n }, { objectid: e - 1n, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: U64_MAX })) {
    if (it.key.type === BTRFS_FREE_SPACE_EXTENT_KEY) out.push(it.key);
  }
  return out;
}

/** [s, e) is no longer free; returns the change in the number of free extents. */
function removeFree(fst: TreeHandle, bg: BlockGroupRange, s: bigint, e: bigint): number {
  const hits = overlapping(fst, bg, s, e);
  let covered = 0n;
  let delta = 0;
  for (const k of hits) {
    const a = k.objectid;
    const b = a + k.offset;
    covered += (b < e ? b : e) - (a > s ? a : s);
    fst.delete(k);
    delta--;
    if (a < s) {
      fst.put(extentKey(a, s - a), new Uint8Array(0));
      delta++;
    }
    if (b > e) {
      fst.put(extentKey(e, b - e), new Uint8Array(0));
      delta++;
    }
  }
  if (covered !== e - s) throw new ImageError('IMAGE_INTERNAL', `free space tree: [${s}, ${e}) allocated but only ${covered} bytes of it were free`, { offset: s });
  return delta;
}

/** [s, e) is free again, merged with the free extents touching it; returns the change in their number. */
function addFree(fst: TreeHandle, bg: BlockGroupRange, s: bigint, e: bigint): number {
  if (overlapping(fst, bg, s, e).length) throw new ImageError('IMAGE_INTERNAL', `free space tree: [${s}, ${e}) freed but part of it is free already`, { offset: s });
  let start = s;
  let end = e;
  let delta = 1;
  const before = s > bg.logical
    ? fst.last({ objectid: s - 1n, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: U64_MAX }, { objectid: bg.logical, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: 0n })
    : undefined;
  if (before && before.key.type === BTRFS_FREE_SPACE_EXTENT_KEY && before.key.objectid + before.key.offset === s) {
    start = before.key.objectid;
    fst.delete(before.key);
    delta--;
  }
  const after = fst.first({ objectid: e, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: 0n }, { objectid: e, type: BTRFS_FREE_SPACE_EXTENT_KEY, offset: U64_MAX });
  if (after && e < bg.logical + bg.length) {
    end = e + after.key.offset;
    fst.delete(after.key);
    delta--;
  }
  fst.put(extentKey(start, end - start), new Uint8Array(0));
  return delta;
}
