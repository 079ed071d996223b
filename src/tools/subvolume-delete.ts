import { ImageError } from '../errors.js';
import type { SubvolumeInfo } from '../image/read/index.js';
import { deleteSubvolume } from '../image/write/subvol-delete.js';
import { changeImage } from '../receive/image-file.js';
import { readCommitted } from './committed-image.js';

/** What `deleteSubvolumes` deleted, in the order given. */
export interface DeletedSubvolume {
  id: bigint;
  /** Its path from the top level, as `subvolume list` prints it. */
  path: string;
}

/**
 * `btrfs subvolume delete` without a mount, and without waiting for the kernel's cleaner: the subvolumes
 * at `paths` (inside the image, as `ls` takes them) and with the ids `ids` are deleted and their trees
 * dropped (image/write/subvol-delete.ts), all at one commit — the space they alone held is free when it
 * returns (`btrfs subvolume delete -c` plus `btrfs subvolume sync`). Everything is checked before
 * anything is written; any refusal or failure leaves the image as it was (changeImage).
 */
export async function deleteSubvolumes(image: string, paths: readonly string[], ids: readonly bigint[] = []): Promise<DeletedSubvolume[]> {
  if (paths.length + ids.length === 0) throw new ImageError('SUBVOL_USAGE', 'no subvolume to delete');
  return changeImage(image, async (real, fs) => {
    // names are looked up in the committed trees: a log the writer's open replayed could change them
    const targets = await readCommitted(real, image, async (img) => {
      const found: SubvolumeInfo[] = [];
      for (const p of paths) found.push(await img.subvolumeByPath(p));
      if (ids.length) {
        const all = new Map((await img.listSubvolumes()).map((s) => [s.id, s]));
        for (const id of ids) {
          const s = all.get(id);
          if (!s) throw new ImageError('IMAGE_NO_SUBVOLUME', `no subvolume with id ${id}`);
          found.push(s);
        }
      }
      return found;
    });
    const seen = new Set<bigint>();
    for (const t of targets) {
      if (seen.has(t.id)) throw new ImageError('SUBVOL_TWICE', `subvolume ${t.id} (${t.path || '<FS_TREE>'}) is named twice`);
      seen.add(t.id);
    }
    for (const t of targets) deleteSubvolume(fs, t.id);
    return targets.map((t) => ({ id: t.id, path: t.path }));
  });
}
