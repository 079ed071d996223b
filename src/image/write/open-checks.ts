import { cannotModify } from '../../errors.js';
import type { ImageReader } from '../read/image.js';
import { primarySuperblockProblem } from '../read/superblock.js';
import {
  BTRFS_BLOCK_GROUP_ITEM_KEY, BTRFS_BLOCK_GROUP_METADATA, BTRFS_BLOCK_GROUP_SYSTEM,
  BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID, BTRFS_HEADER_FLAG_RELOC,
  BTRFS_HEADER_FLAG_WRITTEN, BTRFS_LAST_FREE_OBJECTID, BTRFS_MAX_LEVEL,
} from '../structs/constants.js';
import { decodeBlockGroupItem, type RootItemHead } from '../structs/tree-items.js';
import { blockGroupTreeId } from './block-group-tree.js';
import type { FilesystemModel } from './model.js';

/** Superblock flags a writable, settled filesystem may carry; every other one marks work in progress. */
const SETTLED_FLAGS = BTRFS_HEADER_FLAG_WRITTEN | BTRFS_HEADER_FLAG_RELOC;

/**
 * What a receive must know before it writes its first byte: the image is one the kernel would mount,
 * and the structures the open and the commit rely on are whole. Each check reads only what it names
 * (the superblock; checkRootItem: each root item as the open registers its tree; checkBlockGroups: one
 * lookup per chunk), so the cost does not grow with the data. A failure here leaves the image untouched.
 * (Directories the receive changes are checked when it first changes them: src/receive/size-checks.ts.)
 */
export async function checkWritable(img: ImageReader): Promise<void> {
  const refuse = (code: string, why: string): never => {
    throw cannotModify(code, why);
  };
  const sb = img.superblock;
  const primary = await primarySuperblockProblem(img.src);
  if (primary) refuse('IMAGE_BAD_SUPERBLOCK', `the primary superblock is unusable (${primary}); the kernel would not mount it`);
  if (sb.num_devices !== 1n) refuse('IMAGE_MULTI_DEVICE', `the superblock counts ${sb.num_devices} devices; the writer handles single-device filesystems only`);
  if (sb.flags & ~SETTLED_FLAGS) refuse('IMAGE_SUPER_FLAGS', `superblock flags 0x${sb.flags.toString(16)} mark an unfinished conversion, a seed, an error or a metadump`);
  const size = img.src.size?.();
  if (size !== undefined && size < sb.dev_item.total_bytes) refuse('IMAGE_TRUNCATED', `the file holds ${size} bytes, the device item says ${sb.dev_item.total_bytes}`);
  if (sb.dev_item.total_bytes !== sb.total_bytes) refuse('IMAGE_BAD_SUPERBLOCK', `device size ${sb.dev_item.total_bytes} differs from the filesystem size ${sb.total_bytes}`);
}

/**
 * Where tree `id` starts must be a tree block the kernel would accept as a root. Checked as the open
 * registers each tree (open.ts), in the one pass over the root items an open makes: a second pass of
 * its own read and walked the whole root tree again, ~18 ms of a receive next to 1,000 snapshots.
 */
export function checkRootItem(img: ImageReader, id: bigint, ri: RootItemHead): void {
  const sb = img.superblock;
  const what = `root item of tree ${id}`;
  const refuse = (why: string): never => {
    throw cannotModify('IMAGE_BAD_ROOT_ITEM', `${what} ${why}`);
  };
  if (ri.level >= BTRFS_MAX_LEVEL) refuse(`has level ${ri.level}`);
  if (ri.generation > sb.generation) refuse(`has generation ${ri.generation}, newer than the filesystem's ${sb.generation}`);
  if (ri.bytenr === 0n || ri.bytenr % BigInt(sb.sectorsize) !== 0n) refuse(`has bytenr ${ri.bytenr}`);
  const chunk = img.chunks.find(ri.bytenr);
  if (!chunk || !(chunk.type & (BTRFS_BLOCK_GROUP_METADATA | BTRFS_BLOCK_GROUP_SYSTEM))) refuse(`points at ${ri.bytenr}, outside metadata`);
  const fsTree = id === BTRFS_FS_TREE_OBJECTID || (id >= BTRFS_FIRST_FREE_OBJECTID && id <= BTRFS_LAST_FREE_OBJECTID);
  if (fsTree && ri.root_dirid !== BTRFS_FIRST_FREE_OBJECTID) refuse(`has root_dirid ${ri.root_dirid}`);
}

/**
 * Every chunk needs its block group item (the commit updates its usage) with the same type. Looked up
 * through the writer's own tree, once it is open: the leaves holding them (spread over the extent tree,
 * one or more per chunk on a large image) are then decoded once, and the commit finds them cached.
 */
export function checkBlockGroups(fs: FilesystemModel): void {
  const bgTree = fs.tree(blockGroupTreeId(fs.sb));
  for (const c of fs.chunks.all()) {
    const data = bgTree.get({ objectid: c.logical, type: BTRFS_BLOCK_GROUP_ITEM_KEY, offset: c.length });
    if (!data) throw cannotModify('IMAGE_NO_BLOCK_GROUP', `chunk at ${c.logical} has no block group item`);
    const bg = decodeBlockGroupItem(data);
    if (bg.flags !== c.type) throw cannotModify('IMAGE_BAD_BLOCK_GROUP', `block group at ${c.logical} has flags 0x${bg.flags.toString(16)}, its chunk 0x${c.type.toString(16)}`);
    if (bg.used > c.length) throw cannotModify('IMAGE_BAD_BLOCK_GROUP', `block group at ${c.logical} claims ${bg.used} used bytes of ${c.length}`);
  }
}
