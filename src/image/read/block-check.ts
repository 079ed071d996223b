import { ImageError } from '../../errors.js';
import { type BtrfsKey, compareKeys, formatKey, formatUuid, parseTreeBlock, type TreeBlock, verifyBlockCsum } from '../structs.js';

/**
 * The checks a tree block passes before use, as the kernel makes them on read (btrfs_validate_extent_buffer,
 * btrfs_verify_level_key): checksum, structure, then what the pointer to it promised. Apart from the tree
 * reader (tree.ts), which checks every block it loads with them, because others check blocks without a
 * tree search: the image writer's block store (image/engine) takes its expectations and failure words from
 * here, and the send checks the leaves that shared back references name (send/backrefs.ts).
 */

/** What a block must be, as its parent (or the root item) promised. */
export interface Expect {
  level: number;
  generation: bigint;
  firstKey?: BtrfsKey;
  owner: bigint;
}

/** Why a parsed block is not the one its parent promised, or null. */
function blockMismatch(tb: TreeBlock, bytenr: bigint, exp: Expect, fsid: Uint8Array, ownerOk: (treeId: bigint, owner: bigint) => boolean): string | null {
  const h = tb.header;
  if (h.bytenr !== bytenr) return `header bytenr is ${h.bytenr}`;
  if (!h.fsid.every((b, i) => b === fsid[i])) return `fsid ${formatUuid(h.fsid)} is not this filesystem's`;
  return expectMismatch(tb, exp, ownerOk);
}

/**
 * The part of blockMismatch that depends on who points at the block (level, generation, owner, first key):
 * all a cached block needs checking again, its bytenr and fsid having been checked when it was read.
 */
export function expectMismatch(tb: TreeBlock, exp: Expect, ownerOk: (treeId: bigint, owner: bigint) => boolean): string | null {
  const h = tb.header;
  if (h.level !== exp.level) return `level ${h.level}, expected ${exp.level}`;
  if (h.generation !== exp.generation) return `generation ${h.generation}, parent expects ${exp.generation}`;
  if (!ownerOk(exp.owner, h.owner)) return `owner ${h.owner} cannot belong to tree ${exp.owner}`;
  if (exp.firstKey) {
    const first = tb.firstKey;
    if (first && compareKeys(first, exp.firstKey) !== 0) return `first key ${formatKey(first)}, parent says ${formatKey(exp.firstKey)}`;
  }
  return null;
}

/**
 * One copy of a tree block, checked as the kernel checks it on read: checksum, structure, then what the
 * parent promised. Shared by the async reader and the image writer's synchronous loader.
 */
export function checkTreeCopy(
  raw: Uint8Array, nodesize: number, bytenr: bigint, exp: Expect, fsid: Uint8Array, csumType: number,
  ownerOk: (treeId: bigint, owner: bigint) => boolean = (t, o) => t === o,
): { tb: TreeBlock } | { why: string } {
  if (!verifyBlockCsum(raw, csumType)) return { why: 'checksum mismatch' };
  try {
    const tb = parseTreeBlock(raw, nodesize);
    const why = blockMismatch(tb, bytenr, exp, fsid, ownerOk);
    return why ? { why } : { tb };
  } catch (err) {
    return { why: err instanceof Error ? err.message : String(err) };
  }
}

export function treeBlockError(bytenr: bigint, tree: bigint, why: string): ImageError {
  return new ImageError('IMAGE_BAD_TREE_BLOCK', `tree block ${bytenr} (tree ${tree}): ${why}`, { offset: bytenr, command: 'btrfs_header' });
}
