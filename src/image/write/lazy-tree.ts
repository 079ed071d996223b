import { checkTreeCopy, type Expect, treeBlockError } from '../read/tree.js';
import type { BtrfsKey } from '../structs/fs-items.js';
import type { TreeBlock } from '../structs/tree-block.js';
import type { Filesystem } from './filesystem.js';
import { ItemMap } from './item-map.js';

/**
 * Reads a committed tree into an ItemMap on first use. Subvolume trees an open does not need (older
 * snapshots of a backup chain, say) are never read at all and keep their blocks at the next commit, as
 * the kernel keeps untouched trees; synchronous because the writer's tree API is (the device is).
 * Every block is checked by the image reader's own checkTreeCopy (each copy of a DUP chunk in turn), and
 * no block may be reached twice.
 */
export function loadCommittedTree(fs: Filesystem, rootid: bigint, root: { bytenr: bigint; level: number; generation: bigint }): ItemMap {
  const items = new ItemMap(fs.pageStore);
  const seen = new Set<bigint>();
  const visit = (bytenr: bigint, level: number, generation: bigint, firstKey?: BtrfsKey): void => {
    if (seen.has(bytenr)) throw treeBlockError(bytenr, rootid, 'block reached twice (cyclic or cross-linked tree)');
    seen.add(bytenr);
    const tb = readVerified(fs, bytenr, { level, generation, owner: rootid, ...(firstKey ? { firstKey } : {}) });
    if (level === 0) for (const it of tb.items) items.put(it.key, it.data.slice());
    else for (const p of tb.ptrs) visit(p.blockptr, level - 1, p.generation, p.key);
  };
  visit(root.bytenr, root.level, root.generation);
  return items;
}

function readVerified(fs: Filesystem, bytenr: bigint, exp: Expect): TreeBlock {
  const copies = fs.chunks.toPhysical(bytenr, fs.nodesize);
  const problems: string[] = [];
  for (const phys of copies) {
    const r = checkTreeCopy(fs.device.read(phys, fs.nodesize), fs.nodesize, bytenr, exp, fs.headerFsid, fs.sb.csum_type);
    if ('tb' in r) return r.tb;
    problems.push(copies.length > 1 ? `copy at physical ${phys}: ${r.why}` : r.why);
  }
  throw treeBlockError(bytenr, exp.owner, problems.join('; '));
}
