import { ImageError } from '../../errors.js';
import { verifyBlockCsum } from '../structs/superblock.js';
import { parseTreeBlock } from '../structs/tree-block.js';
import type { BtrfsKey } from '../structs/fs-items.js';
import type { Filesystem } from './filesystem.js';
import { compareKeys, ItemMap } from './item-map.js';

/**
 * Reads a committed tree into an ItemMap on first use. Subvolume trees an open does not need (older
 * snapshots of a backup chain, say) are never read at all and keep their blocks at the next commit, as
 * the kernel keeps untouched trees; synchronous because the writer's tree API is (the device is).
 * Every block is checked as the image reader checks it: checksum (trying each copy of a DUP chunk),
 * bytenr, level, generation from the parent pointer, owner, and no block visited twice.
 */
export function loadCommittedTree(fs: Filesystem, rootid: bigint, root: { bytenr: bigint; level: number; generation: bigint }): ItemMap {
  const items = new ItemMap(fs.pageStore);
  const seen = new Set<bigint>();
  const visit = (bytenr: bigint, level: number, generation: bigint, firstKey?: BtrfsKey): void => {
    if (seen.has(bytenr)) fail(rootid, bytenr, 'block reached twice (cyclic or cross-linked tree)');
    seen.add(bytenr);
    const tb = readVerified(fs, rootid, bytenr);
    const h = tb.header;
    if (h.level !== level) fail(rootid, bytenr, `level ${h.level}, expected ${level}`);
    if (h.generation !== generation) fail(rootid, bytenr, `generation ${h.generation}, parent expects ${generation}`);
    if (h.owner !== rootid) fail(rootid, bytenr, `owner ${h.owner}`);
    if (!h.fsid.every((b, i) => b === fs.headerFsid[i])) fail(rootid, bytenr, 'fsid is not this filesystem\'s');
    const first = level === 0 ? tb.items[0]?.key : tb.ptrs[0]?.key;
    if (firstKey && first && compareKeys(first, firstKey) !== 0) fail(rootid, bytenr, 'first key differs from the parent\'s pointer');
    if (level === 0) for (const it of tb.items) items.put(it.key, it.data.slice());
    else for (const p of tb.ptrs) visit(p.blockptr, level - 1, p.generation, p.key);
  };
  visit(root.bytenr, root.level, root.generation);
  return items;
}

function readVerified(fs: Filesystem, rootid: bigint, bytenr: bigint): ReturnType<typeof parseTreeBlock> {
  const problems: string[] = [];
  for (const phys of fs.chunks.toPhysical(bytenr, fs.nodesize)) {
    const raw = fs.device.read(phys, fs.nodesize);
    if (!verifyBlockCsum(raw)) {
      problems.push(`copy at physical ${phys}: checksum mismatch`);
      continue;
    }
    const tb = parseTreeBlock(raw, fs.nodesize);
    if (tb.header.bytenr !== bytenr) {
      problems.push(`copy at physical ${phys}: header bytenr is ${tb.header.bytenr}`);
      continue;
    }
    return tb;
  }
  return fail(rootid, bytenr, problems.join('; '));
}

function fail(rootid: bigint, bytenr: bigint, why: string): never {
  throw new ImageError('IMAGE_BAD_TREE_BLOCK', `tree block ${bytenr} (tree ${rootid}): ${why}`, { offset: bytenr, command: 'btrfs_header' });
}
