/**
 * Public API of the image writer. See docs/image-format.md for the model and the commit protocol.
 */
export { Filesystem, TreeHandle, type GrowthOptions, type TreeState } from './filesystem.js';
export { createFilesystem, defaultRootItem, dirInodeItem, nowTimespec, randomUuid, type CreateOptions } from './create.js';
export { openFilesystem } from './open.js';
export {
  addDataCsums, addDataExtent, addDataRef, deleteCsums, dropDataRef, getDataExtent, hashExtentDataRef, maxCsumsPerItem,
  type DataExtentInfo,
} from './extents.js';
export {
  createInode, extrefHash, fileTypeOfMode, getInode, linkEntry, linkInode, lookupDirEntry, nextObjectid, removeXattr,
  setXattr, unlinkEntry, updateInode, type DirEntry, type NewInode,
} from './inode.js';
export {
  BTRFS_MAX_EXTENT_SIZE, dropFileExtents, insertFileExtent, maxInlineSize, writeDataExtent, writeInlineExtent,
  writePreallocExtent, type FileExtentRef,
} from './file-data.js';
export { Populator, type ExtentCompressor, type ReadAt, type SourceStat } from './populate.js';
export type { Item, Key } from './items.js';
export {
  createSubvolume, getRootItem, lookupUuid, nextRootId, setReceivedSubvol, setSubvolReadonly, updateRootItem,
  type NewSubvolume,
} from './subvol.js';
export { deleteSubvolume, defaultSubvolume } from './subvol-delete.js';
