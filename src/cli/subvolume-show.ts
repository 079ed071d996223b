import type { BtrfsImage, SubvolumeInfo } from '../image/read/index.js';
import { BTRFS_FS_TREE_OBJECTID, BTRFS_QGROUP_INFO_KEY, BTRFS_QGROUP_LIMIT_KEY, BTRFS_QUOTA_TREE_OBJECTID } from '../image/structs/constants.js';
import type { BtrfsTimespec } from '../image/structs.js';
import { formatUuid } from '../util/uuid.js';
import { progsLocalTime, uuidOrDash } from './progs-format.js';

/**
 * `btrfs subvolume show` of a subvolume of an image, in btrfs-progs' words and layout (cmds/subvolume.c,
 * cmd_subvolume_show), so the two can be compared line for line. One quirk is kept as progs prints it:
 * "Send time" shows the creation time (progs formats stime only after printing that line).
 */

const showTime = (t: BtrfsTimespec): string => progsLocalTime(t.sec, true);

/** progs' pretty_size in its default mode: binary units, "%.2f" and the suffix ("16.00KiB", "0.00B"). */
export function prettySize(n: bigint): string {
  const suffix = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let size = n;
  let last = n;
  let divs = 0;
  while (size >= 1024n) {
    last = size;
    size /= 1024n;
    divs++;
  }
  // progs divides in float (single precision) with the base of the last step
  const fraction = divs === 0 ? Number(last) : Math.fround(Number(last)) / 1024;
  return `${fraction.toFixed(2)}${suffix[divs]}`;
}

/** The subvolumes in the order progs' subvolume iterator gives them: from the top level, each followed by what it holds, by id. */
function iterationOrder(all: SubvolumeInfo[]): SubvolumeInfo[] {
  const children = new Map<bigint, SubvolumeInfo[]>();
  for (const s of all) {
    if (s.id === BTRFS_FS_TREE_OBJECTID) continue;
    const list = children.get(s.parent) ?? [];
    list.push(s);
    children.set(s.parent, list);
  }
  const out: SubvolumeInfo[] = [];
  const walk = (id: bigint, depth: number): void => {
    if (depth > 4096) return; // a damaged image's loop
    for (const c of (children.get(id) ?? []).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      out.push(c);
      walk(c.id, depth + 1);
    }
  };
  walk(BTRFS_FS_TREE_OBJECTID, 0);
  return out;
}

/** Quota lines as progs prints them: none where quotas are off (no quota tree), "n/a" without the subvolume's qgroup. */
async function quotaLines(img: BtrfsImage, id: bigint): Promise<string[]> {
  const r = img.reader;
  if (!(await r.rootItem(BTRFS_QUOTA_TREE_OBJECTID))) return [];
  const quota = await r.tree(BTRFS_QUOTA_TREE_OBJECTID);
  const info = await r.trees.lookup(quota, { objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: id });
  const limit = await r.trees.lookup(quota, { objectid: 0n, type: BTRFS_QGROUP_LIMIT_KEY, offset: id });
  if (!info || info.data.length < 40) return ['\tQuota group:\t\tn/a'];
  const u64 = (d: Uint8Array, at: number): bigint => (d.length >= at + 8 ? Buffer.from(d.buffer, d.byteOffset, d.length).readBigUInt64LE(at) : 0n);
  const maxRfer = limit ? u64(limit.data, 8) : 0n;
  const maxExcl = limit ? u64(limit.data, 16) : 0n;
  return [
    `\tQuota group:\t\t0/${id}`,
    `\t  Limit referenced:\t${maxRfer === 0n ? '-' : prettySize(maxRfer)}`,
    `\t  Limit exclusive:\t${maxExcl === 0n ? '-' : prettySize(maxExcl)}`,
    `\t  Usage referenced:\t${prettySize(u64(info.data, 8))}`,
    `\t  Usage exclusive:\t${prettySize(u64(info.data, 24))}`,
  ];
}

/** The lines of `btrfs subvolume show` for `sv`, given every subvolume of the image (for its snapshots). */
export async function subvolumeShow(img: BtrfsImage, sv: SubvolumeInfo, all: SubvolumeInfo[]): Promise<string> {
  const top = sv.id === BTRFS_FS_TREE_OBJECTID;
  const it = sv.item;
  const created = showTime(it.otime);
  const lines = [
    top ? '/' : sv.path,
    `\tName: \t\t\t${top ? '<FS_TREE>' : sv.path.slice(sv.path.lastIndexOf('/') + 1)}`,
    `\tUUID: \t\t\t${uuidOrDash(sv.uuid)}`,
    `\tParent UUID: \t\t${uuidOrDash(sv.parentUuid)}`,
    `\tReceived UUID: \t\t${uuidOrDash(sv.receivedUuid)}`,
    `\tCreation time: \t\t${created}`,
    `\tSubvolume ID: \t\t${sv.id}`,
    `\tGeneration: \t\t${sv.generation}`,
    `\tGen at creation: \t${sv.otransid}`,
    `\tParent ID: \t\t${sv.parent}`,
    `\tTop level ID: \t\t${sv.parent}`,
    `\tFlags: \t\t\t${sv.readonly ? 'readonly' : '-'}`,
    `\tSend transid: \t\t${sv.stransid}`,
    `\tSend time: \t\t${created}`,
    `\tReceive transid: \t${sv.rtransid}`,
    `\tReceive time: \t\t${showTime(it.rtime)}`,
    '\tSnapshot(s):',
    ...iterationOrder(all).filter((s) => formatUuid(s.parentUuid) === formatUuid(sv.uuid)).map((s) => `\t\t\t\t${s.path}`),
    ...(await quotaLines(img, sv.id)),
  ];
  return lines.join('\n') + '\n';
}
