import { ReceiveError } from '../errors.js';
import { BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE } from '../image/structs/constants.js';
import { decodeFileExtentItem } from '../image/structs/fs-items.js';
import { addDataRef } from '../image/write/extents.js';
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
 * A writable snapshot of `source` named `name` in (parentRoot, parentDir). Tree blocks are not shared
 * as the kernel shares them: the new tree gets its own copy of every item, and every data extent one
 * more reference, which is a valid (if less compact) btrfs and keeps each commit self-contained.
 */
export function snapshotSubvolume(fs: Filesystem, source: bigint, o: { parentRoot: bigint; parentDir: bigint; name: Uint8Array }): bigint {
  const src = getRootItem(fs, source);
  const id = createSubvolume(fs, { parentRoot: o.parentRoot, parentDir: o.parentDir, name: o.name, parentUuid: src.uuid, snapshot: true });
  const dst = fs.tree(id);
  dst.copyItemsFrom(fs.tree(source));
  for (const it of fs.tree(source).entries()) {
    if (it.key.type !== BTRFS_EXTENT_DATA_KEY) continue;
    const fe = decodeFileExtentItem(it.data);
    if (fe.type === BTRFS_FILE_EXTENT_INLINE || fe.disk_bytenr === 0n) continue;
    addDataRef(fs, fe.disk_bytenr, id, it.key.objectid, BigInt.asUintN(64, it.key.offset - fe.offset));
  }
  updateRootItem(fs, source, { last_snapshot: fs.transid });
  // as create_pending_snapshot: the source's inode and change stamp, a new uuid and creation stamp
  updateRootItem(fs, id, { inode: src.inode, ctransid: src.ctransid, ctime: src.ctime, last_snapshot: fs.transid });
  return id;
}

export function missingParent(uuid: Uint8Array, what: string): ReceiveError {
  return new ReceiveError('parent-not-found', `${what} ${formatUuid(uuid)} is not in this image (looked up as received uuid, then as uuid)`);
}
