import { BtrfsImage, type SubvolumeInfo } from '../image/read/index.js';
import { staleSnapshotKey } from '../image/read/subvols.js';
import { withImageFile } from '../io/image-read-file.js';
import { changeImage } from '../receive/image-file.js';
import { readCommitted } from './committed-image.js';

/**
 * Images an earlier btrfs-ts (builds before 2026-11-28) received keyed each received incremental's
 * ROOT_ITEM with the transaction that made and changed the snapshot; the kernel's `btrfs subvolume
 * delete` of such a subvolume leaves references by the deleted tree behind and damages the filesystem
 * (image/write/subvol.ts snapshotKeyOffset). btrfs-ts's writer rekeys them whenever it opens an image; these name that fix for
 * the user who only wants it before letting the kernel prune the chain.
 */

const stale = (s: SubvolumeInfo): boolean => staleSnapshotKey(s.id, s.keyOffset, { otransid: s.otransid, rtransid: s.rtransid, received_uuid: s.receivedUuid });

/** The subvolumes of `subvolumes` keyed as an earlier btrfs-ts keyed them. */
export function staleSnapshotKeys(subvolumes: readonly SubvolumeInfo[]): SubvolumeInfo[] {
  return subvolumes.filter(stale);
}

/** One line for read commands to print when an image holds such subvolumes (undefined when it holds none). */
export function staleKeyWarning(image: string, subvolumes: readonly SubvolumeInfo[]): string | undefined {
  const n = staleSnapshotKeys(subvolumes).length;
  if (n === 0) return undefined;
  return `btrfs-ts: WARNING: ${n} received subvolume${n === 1 ? ' is' : 's are'} keyed as an earlier btrfs-ts keyed them: the kernel's \`btrfs subvolume delete\` of ${n === 1 ? 'it' : 'them'} would damage the filesystem; run \`btrfs-ts rescue fix-snapshot-keys ${image}\` first\n`;
}

/**
 * `btrfs-ts rescue fix-snapshot-keys IMAGE`: the received snapshots keyed the old way rekeyed, at one
 * commit; nothing written when there are none. Returns them (as they were listed before). An image with a
 * tree log is refused, as every other change refuses it.
 */
export async function rekeySnapshots(image: string): Promise<SubvolumeInfo[]> {
  const found = await withImageFile(image, async (src) => {
    const img = await BtrfsImage.open(src);
    return staleSnapshotKeys([...await img.listSubvolumes(), ...await img.deletedSubvolumes()]);
  });
  if (found.length === 0) return [];
  // the writer's open rekeys them (write/open.ts); the commit writes the root tree
  await changeImage(image, async (real) => readCommitted(real, image, async () => undefined));
  return found;
}
