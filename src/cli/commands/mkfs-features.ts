import { ImageError } from '../../errors.js';

/**
 * mkfs.btrfs -O / -R feature lists ("no-holes,^extref", "list-all"). Each feature mkfs.btrfs 6.16 knows
 * is either made (on or off, as asked) or refused here, before anything is written, with the reason.
 */
export interface MkfsFeatures {
  noHoles: boolean;
  extref: boolean;
  freeSpaceTree: boolean;
  skinnyMetadata: boolean;
  quota: boolean;
  blockGroupTree: boolean;
  /** mixed-bg (also -M) */
  mixed: boolean;
}

type Rule = { can: 'both' } | { can: 'never'; why: string };
const RULES: Record<string, Rule> = {
  'no-holes': { can: 'both' },
  extref: { can: 'both' },
  // off: tree block extents are EXTENT_ITEMs with a btrfs_tree_block_info (src/image/write/tree-block-item.ts)
  'skinny-metadata': { can: 'both' },
  // off: no free space tree and no v1 cache yet (cache_generation -1, as mkfs.btrfs leaves it): the kernel
  // builds its cache at the first mount, receive invalidates it (src/image/write/space-cache-v1.ts)
  'free-space-tree': { can: 'both' },
  // the same as -M: data and tree blocks share DATA|METADATA block groups (src/image/write/mixed-groups.ts)
  'mixed-bg': { can: 'both' },
  // block group items in their own tree (src/image/write/block-group-tree.ts); needs free-space-tree and no-holes
  'block-group-tree': { can: 'both' },
  // quotas on, every level-0 qgroup counted as mkfs.btrfs counts them (src/image/write/qgroup-count.ts)
  quota: { can: 'both' },
  squota: { can: 'never', why: 'simple quotas are not supported' },
  raid56: { can: 'never', why: 'needs several devices (btrfs-ts makes single-device images)' },
  raid1c34: { can: 'never', why: 'needs several devices (btrfs-ts makes single-device images)' },
  'raid-stripe-tree': { can: 'never', why: 'the raid stripe tree is not supported' },
  zoned: { can: 'never', why: 'zoned devices are not supported' },
  'extent-tree-v2': { can: 'never', why: 'extent tree v2 is not supported' },
};
const ALIASES: Record<string, string> = { fst: 'free-space-tree', bgt: 'block-group-tree' };
const DEFAULTS = new Set(['no-holes', 'extref', 'skinny-metadata', 'free-space-tree']);

/** The text `-O list-all` prints: every feature and what btrfs-ts does with it. */
export function listFeatures(): string {
  return Object.entries(RULES).map(([name, r]) => {
    const what = r.can === 'both' ? 'on or off' : `refused: ${r.why}`;
    return `${name.padEnd(18)} ${DEFAULTS.has(name) ? '(default) ' : ''}${what}`;
  }).join('\n') + '\n';
}

/** Applies the -O and -R lists (in that order) to the defaults; "list-all" anywhere gives undefined. */
export function parseFeatures(lists: string[]): MkfsFeatures | undefined {
  const on = new Set(DEFAULTS);
  for (const list of lists) {
    for (const raw of list.split(',').map((s) => s.trim()).filter(Boolean)) {
      if (raw === 'list-all' || raw === 'list') return undefined;
      const off = raw.startsWith('^');
      const name0 = (off ? raw.slice(1) : raw).toLowerCase();
      const name = ALIASES[name0] ?? name0;
      const rule = RULES[name];
      if (!rule) throw new ImageError('MKFS_USAGE', `-O: unknown feature "${name0}" (-O list-all lists them)`);
      if (off) {
        on.delete(name);
      } else {
        if (rule.can === 'never') throw new ImageError('MKFS_UNSUPPORTED', `-O ${name}: ${rule.why}`);
        on.add(name);
      }
    }
  }
  return { noHoles: on.has('no-holes'), extref: on.has('extref'), freeSpaceTree: on.has('free-space-tree'), skinnyMetadata: on.has('skinny-metadata'), quota: on.has('quota'), blockGroupTree: on.has('block-group-tree'), mixed: on.has('mixed-bg') };
}
