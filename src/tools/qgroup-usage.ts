import type { BtrfsImage } from '../image/read/index.js';
import {
  BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_QGROUP_INFO_KEY, BTRFS_QGROUP_LIMIT_KEY, BTRFS_QGROUP_RELATION_KEY,
  BTRFS_QUOTA_TREE_OBJECTID, U64_MAX,
} from '../image/structs/constants.js';
import { decodeFileExtentItem } from '../image/structs/fs-items.js';
import { ReachPass } from '../image/qgroup-reach.js';
import { BTRFS_HEADER_SIZE, BTRFS_ITEM_SIZE } from '../image/structs.js';
import { leafData } from '../image/read/leaf-keys.js';
import { u64At } from '../util/bytes.js';

/** One quota group as `btrfs qgroup show` lists it: id (level << 48 | subvolume id), usage, limits, members. */
export interface QgroupRow {
  qgroupid: bigint;
  referenced: bigint;
  exclusive: bigint;
  /** Limits from the quota tree's QGROUP_LIMIT item (flags, max_rfer, max_excl), where it has one. */
  limit?: { flags: bigint; maxReferenced: bigint; maxExclusive: bigint };
  /** Level 0: the subvolume's path from the top level ('' for the top level itself), undefined when stale. */
  path?: string;
  /** The groups this one is a member of, and its members (QGROUP_RELATION items). */
  parents: bigint[];
  members: bigint[];
}

export const QGROUP_LEVEL_SHIFT = 48n;

/**
 * Every quota group's usage as a rescan counts it (`btrfs quota rescan`): the subvolumes' trees passed
 * over once (image/qgroup-reach.ts, which says what is counted); a higher-level group refers to what any
 * subvolume under it reaches, and holds exclusively what only those reach. The groups are those of the
 * quota tree where the image has one, else the level-0 group of every subvolume that `btrfs quota enable`
 * makes. Usage is counted here, not read from the quota tree: a receive leaves it marked inconsistent,
 * and an image's numbers may be out of date. `dropped`: subvolumes deleted but not cleaned up yet,
 * counted as if their trees were dropped; their level-0 groups are left out with their relations, as the
 * kernel removes them once a drop ends (btrfs_qgroup_cleanup_dropped_subvolume, since 6.10).
 */
export async function qgroupUsage(img: BtrfsImage, dropped: readonly bigint[] = []): Promise<QgroupRow[]> {
  const subvols = await img.listSubvolumes();
  const reader = img.reader;
  const pass = new ReachPass(BigInt(reader.superblock.nodesize));
  for (const sv of subvols) {
    const root = await reader.tree(sv.id);
    pass.addRoot(sv.id, root.bytenr, root.level, root.generation);
  }
  for (const b of pass.blocks()) {
    const tb = await reader.trees.readBlock(b.bytenr, { level: b.level, generation: b.generation, owner: b.owner });
    if (b.level > 0) {
      for (const ptr of tb.ptrs) pass.child(b.level, ptr.blockptr, ptr.generation, b.owner);
      continue;
    }
    // keys read in place: most of a leaf's items are not file extents
    for (let i = 0; i < tb.header.nritems; i++) {
      if (tb.view.getUint8(BTRFS_HEADER_SIZE + i * BTRFS_ITEM_SIZE + 8) !== BTRFS_EXTENT_DATA_KEY) continue;
      const data = leafData(tb, i);
      if (data[20] === BTRFS_FILE_EXTENT_INLINE) continue;
      const fe = decodeFileExtentItem(data);
      if (fe.disk_bytenr !== 0n) pass.dataExtent(fe.disk_bytenr, fe.disk_num_bytes);
    }
  }

  const rows = new Map<bigint, QgroupRow>();
  const row = (id: bigint): QgroupRow => {
    let r = rows.get(id);
    if (!r) rows.set(id, (r = { qgroupid: id, referenced: 0n, exclusive: 0n, parents: [], members: [] }));
    return r;
  };
  for (const sv of subvols) row(sv.id).path = sv.id === 5n ? '' : sv.path;
  if (await reader.rootItem(BTRFS_QUOTA_TREE_OBJECTID)) {
    const quota = await reader.tree(BTRFS_QUOTA_TREE_OBJECTID);
    // without quota items for a subvolume the kernel has no group for it: only the tree's groups are shown
    const known = new Set<bigint>();
    for await (const it of reader.trees.iterate(quota, { objectid: 0n, type: 0, offset: 0n }, { objectid: U64_MAX, type: 255, offset: U64_MAX })) {
      if (it.key.type === BTRFS_QGROUP_INFO_KEY) known.add(it.key.offset);
      else if (it.key.type === BTRFS_QGROUP_LIMIT_KEY && it.data.length >= 24) {
        row(it.key.offset).limit = { flags: u64At(it.data, 0), maxReferenced: u64At(it.data, 8), maxExclusive: u64At(it.data, 16) };
      } else if (it.key.type === BTRFS_QGROUP_RELATION_KEY && it.key.objectid < it.key.offset) {
        // (each relation is stored both ways: member → group is objectid < offset)
        row(it.key.objectid).parents.push(it.key.offset);
        row(it.key.offset).members.push(it.key.objectid);
      }
    }
    for (const id of dropped) known.delete(id);
    for (const id of [...rows.keys()]) if (!known.has(id)) rows.delete(id);
    for (const id of known) row(id);
    // (btrfs_remove_qgroup takes the relations both ways with the group)
    for (const r of rows.values()) {
      r.parents = r.parents.filter((p) => known.has(p));
      r.members = r.members.filter((m) => known.has(m));
    }
  }

  // the subvolumes under a group, through its member groups (each group's own walk: two members may share one)
  const subvolumesOf = (id: bigint): Set<bigint> => {
    const out = new Set<bigint>();
    const seen = new Set<bigint>();
    for (const stack = [id]; stack.length > 0;) {
      const g = stack.pop()!;
      if (seen.has(g)) continue;
      seen.add(g);
      if (g >> QGROUP_LEVEL_SHIFT === 0n) out.add(g);
      stack.push(...(rows.get(g)?.members ?? []));
    }
    return out;
  };
  for (const [id, c] of pass.subvolumeCounts([...rows.keys()].filter((id) => id >> QGROUP_LEVEL_SHIFT === 0n))) {
    rows.get(id)!.referenced = c.referenced;
    rows.get(id)!.exclusive = c.exclusive;
  }
  // the few higher groups: what any subvolume under them reaches, and what only those do
  const higher = [...rows.values()].filter((r) => r.qgroupid >> QGROUP_LEVEL_SHIFT !== 0n).map((r) => ({ r, subs: subvolumesOf(r.qgroupid) }));
  for (const { bytes, reach } of pass.extents.values()) {
    for (const { r, subs } of higher) {
      let hits = 0;
      for (const id of reach.ids) if (subs.has(id)) hits++;
      if (hits === 0) continue;
      r.referenced += bytes;
      if (hits === reach.ids.length) r.exclusive += bytes;
    }
  }
  return [...rows.values()].sort((a, b) => (a.qgroupid < b.qgroupid ? -1 : a.qgroupid > b.qgroupid ? 1 : 0));
}
