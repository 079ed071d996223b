/**
 * A key of the writer's trees (the kernel's struct btrfs_key, ordered by compareKeys in structs/fs-items)
 * and a leaf item: key and data. (The file was item-map.ts, when the writer held its trees as item maps;
 * every tree is now an engine/ B-tree on disk.)
 */
import type { BtrfsKey } from '../structs/fs-items.js';

export type Key = BtrfsKey;

export interface Item {
  key: Key;
  data: Uint8Array;
}
