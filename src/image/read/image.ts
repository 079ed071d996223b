import { ImageError } from '../../errors.js';
import {
  BTRFS_CHUNK_ITEM_KEY, BTRFS_CHUNK_TREE_OBJECTID, BTRFS_CSUM_TREE_OBJECTID, BTRFS_FIRST_CHUNK_TREE_OBJECTID,
  BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID, BTRFS_LAST_FREE_OBJECTID, BTRFS_ROOT_ITEM_KEY,
  BTRFS_ROOT_TREE_OBJECTID, BTRFS_TREE_RELOC_OBJECTID, type BtrfsKey, type BtrfsRootItem, type BtrfsSuperBlock,
  decodeChunk, decodeRootItem, decodeSysChunkArray,
} from '../structs.js';
import { ChunkMap } from './chunk-map.js';
import { type LogReplay, replayTreeLog } from './log-replay.js';
import type { ImageSource } from './source.js';
import { metadataFsid, readSuperblock } from './superblock.js';
import { type TreeRoot, TreeReader } from './tree.js';
import { U64_MAX } from '../structs/constants.js';

/** Subvolume trees: the top level (5) and ids in the free objectid range. */
export function isFsTreeId(id: bigint): boolean {
  return id === BTRFS_FS_TREE_OBJECTID || (id >= BTRFS_FIRST_FREE_OBJECTID && id <= BTRFS_LAST_FREE_OBJECTID);
}

/**
 * An opened image: superblock, chunk map, and access to the trees by id. Higher-level operations
 * (paths, inodes, file data, subvolume lists) live in their own modules and take this object.
 */
export class ImageReader {
  private rootItems = new Map<bigint, { item: BtrfsRootItem; key: BtrfsKey } | null>();
  /** Set when the image had a tree log: the readers show the trees as a mount replays them. */
  logReplay: LogReplay | undefined;

  private constructor(
    readonly src: ImageSource,
    readonly superblock: BtrfsSuperBlock,
    readonly chunks: ChunkMap,
    readonly trees: TreeReader,
  ) {}

  static async open(src: ImageSource): Promise<ImageReader> {
    const sb = await readSuperblock(src);
    const chunks = new ChunkMap(sb.dev_item.devid, sb.num_devices, src.devices);
    for (const c of decodeSysChunkArray(sb.sys_chunk_array, sb.sys_chunk_array_size)) chunks.add(c.key, c.chunk);
    const ownerOk = (tree: bigint, owner: bigint): boolean =>
      tree === owner || (isFsTreeId(tree) && (isFsTreeId(owner) || owner === BTRFS_TREE_RELOC_OBJECTID));
    const trees = new TreeReader(src, chunks, sb.nodesize, metadataFsid(sb), sb.csum_type, ownerOk);
    const chunkRoot: TreeRoot = { id: BTRFS_CHUNK_TREE_OBJECTID, bytenr: sb.chunk_root, level: sb.chunk_root_level, generation: sb.chunk_root_generation };
    const from = { objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID, type: BTRFS_CHUNK_ITEM_KEY, offset: 0n };
    const to = { objectid: BTRFS_FIRST_CHUNK_TREE_OBJECTID, type: BTRFS_CHUNK_ITEM_KEY, offset: U64_MAX };
    for await (const it of trees.iterate(chunkRoot, from, to)) chunks.add(it.key, decodeChunk(it.data));
    const reader = new ImageReader(src, sb, chunks, trees);
    if (sb.log_root !== 0n) reader.logReplay = await replayTreeLog(reader);
    return reader;
  }

  get rootTree(): TreeRoot {
    const sb = this.superblock;
    return { id: BTRFS_ROOT_TREE_OBJECTID, bytenr: sb.root, level: sb.root_level, generation: sb.generation };
  }

  get sectorsize(): number {
    return this.superblock.sectorsize;
  }

  /** The newest ROOT_ITEM of tree `id` (snapshots key it with their creation transid), or undefined. */
  async rootItem(id: bigint): Promise<{ item: BtrfsRootItem; key: BtrfsKey } | undefined> {
    if (!this.rootItems.has(id)) {
      const it = await this.trees.lookupLE(this.rootTree, { objectid: id, type: BTRFS_ROOT_ITEM_KEY, offset: U64_MAX });
      const ok = it && it.key.objectid === id && it.key.type === BTRFS_ROOT_ITEM_KEY;
      this.rootItems.set(id, ok ? { item: decodeRootItem(it.data), key: it.key } : null);
    }
    return this.rootItems.get(id) ?? undefined;
  }

  /** The tree root of tree `id` (fs trees, csum tree, extent tree, ...). */
  async tree(id: bigint): Promise<TreeRoot> {
    const r = await this.rootItem(id);
    if (!r) throw new ImageError('IMAGE_NO_TREE', `tree ${id} has no ROOT_ITEM in the root tree`, { command: 'btrfs_root_item' });
    return { id, bytenr: r.item.bytenr, level: r.item.level, generation: r.item.generation };
  }

  /** Csum tree root, or undefined on an image without one (nodatasum everywhere). */
  async csumTree(): Promise<TreeRoot | undefined> {
    return (await this.rootItem(BTRFS_CSUM_TREE_OBJECTID)) ? this.tree(BTRFS_CSUM_TREE_OBJECTID) : undefined;
  }

  /** Read logical bytes (data extents): maps through the chunk tree, first copy. */
  async readLogical(logical: bigint, len: number, what = 'data extent'): Promise<Uint8Array> {
    const phys = this.chunks.map(logical, len, what)[0]!;
    return this.src.read(phys, len);
  }
}
