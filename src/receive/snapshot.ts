import { ReceiveError } from '../errors.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { createSubvolume, getRootItem, lookupUuid, updateRootItem } from '../image/write/subvol.js';
import { formatUuid } from '../util/uuid.js';

/**
 * Finds the subvolume a stream refers to by UUID, as btrfs receive does: first among subvolumes that were
 * themselves received (received_uuid), then by their own uuid.
 */
export function findSubvolByUuid(fs: Filesystem, uuid: Uint8Array): bigint | undefined {
  for (const received of [true, false]) {
    for (const id of lookupUuid(fs, uuid, received)) {
      if (fs.hasTree(id)) return id;
    }
  }
  return undefined;
}

/**
 * A writable snapshot of `source` named `name` in (parentRoot, parentDir), as the kernel makes it: the
 * new tree's root is a copy of the source's root block and shares every block below it; blocks are
 * copied when either tree changes them (the reference counts follow, see image/write/cow-refs.ts).
 */
export function snapshotSubvolume(fs: Filesystem, source: bigint, o: { parentRoot: bigint; parentDir: bigint; name: Uint8Array }): bigint {
  const src = getRootItem(fs, source);
  const id = createSubvolume(fs, { parentRoot: o.parentRoot, parentDir: o.parentDir, name: o.name, parentUuid: src.uuid, snapshot: true });
  fs.shareTree(source, id);
  updateRootItem(fs, source, { last_snapshot: fs.transid });
  // as create_pending_snapshot: the source's inode and change stamp, a new uuid and creation stamp
  updateRootItem(fs, id, { inode: src.inode, ctransid: src.ctransid, ctime: src.ctime, last_snapshot: fs.transid });
  return id;
}

export function missingParent(uuid: Uint8Array, what: string): ReceiveError {
  return new ReceiveError('PARENT_NOT_FOUND', `${what} ${formatUuid(uuid)} is not in this image (looked up as received uuid, then as uuid)`);
}
