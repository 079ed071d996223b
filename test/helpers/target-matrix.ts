import { execFileSync, spawnSync } from 'node:child_process';
import { expect } from 'vitest';

/**
 * mkfs.btrfs targets btrfs-ts receives into, and what must happen with each: received fully (btrfs check
 * clean, kernel mount, the kernel-received manifests) or refused on open with a one-line error and the
 * image byte for byte unchanged. Issue 12 (checksums, non-skinny metadata, block group tree, ...) flips
 * entries from refused to received as it adds layouts. docs/security.md lists the same table.
 */
export type Outcome = 'received' | { refused: RegExp };

export interface Target {
  name: string;
  /** mkfs.btrfs arguments (besides -q -f IMAGE). */
  mkfs: string[];
  /** Image size for truncate. */
  size: string;
  /** Use the image with the kernel first (mount, write, snapshot, delete) before receiving into it. */
  kernelUsed?: boolean;
  /**
   * After the receive: check --check-data-csum, scrub, kernel rw use (write, delete, sync), check again,
   * btrfs-ts receives again, check. For the layouts a module of issue 12 handles (one image each).
   */
  workout?: boolean;
  /** A line `btrfs check` prints after the receive (the layout's module did what it says). */
  checkSays?: RegExp;
  /** Made by a newer mkfs.btrfs than the installed one (newerMkfs()); the row says why it skips without one. */
  newerMkfs?: boolean;
  /** What else must hold of the image right after the receive. */
  after?: (image: string) => void;
  expect: Outcome;
}

const refused = (why: RegExp): Outcome => ({ refused: why });

/** Every v1 space cache inode has generation 0 (the kernel's "do not trust" mark) and there is one. */
function cacheInodesInvalid(image: string): void {
  const root = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'root', image], { encoding: 'utf8' });
  const inodes = [...root.matchAll(/location key \((\d+) INODE_ITEM 0\)/g)].map((m) => m[1]!);
  expect(inodes.length).toBeGreaterThan(0);
  for (const ino of inodes) expect(root, `cache inode ${ino}`).toMatch(new RegExp(`key \\(${ino} INODE_ITEM 0\\)[^\\n]*\\n\\s+generation 0 `));
}

/** No skinny METADATA_ITEM in the extent tree, and tree block EXTENT_ITEMs are there (non-skinny images). */
function noMetadataItems(image: string): void {
  const extent = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'extent', image], { encoding: 'utf8' });
  expect(extent).not.toMatch(/METADATA_ITEM/);
  expect(extent).toMatch(/EXTENT_ITEM \d+\) itemoff \d+ itemsize \d+\n\s+refs \d+ gen \d+ flags TREE_BLOCK/);
}

/**
 * A mkfs.btrfs newer than the installed 6.2, for layouts 6.2 cannot make (-O block-group-tree, 6.3+):
 * BTRFS_TS_NEWER_MKFS names it (a btrfs-progs build of one's own; nothing here builds or fetches one).
 */
export function newerMkfs(): string | { skipped: string } {
  const bin = process.env.BTRFS_TS_NEWER_MKFS;
  if (!bin) return { skipped: 'BTRFS_TS_NEWER_MKFS is not set (mkfs.btrfs 6.2 has no -O block-group-tree; point it at a mkfs.btrfs >= 6.3)' };
  const v = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  if (v.status !== 0) return { skipped: `BTRFS_TS_NEWER_MKFS=${bin} does not run` };
  return bin;
}

/** Block group items only in the block group tree, one per chunk. */
function blockGroupTreeItems(image: string): void {
  const dump = (t: string): string => execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', t, image], { encoding: 'utf8' });
  expect(dump('extent')).not.toMatch(/BLOCK_GROUP_ITEM/);
  const chunks = dump('chunk').split('CHUNK_ITEM').length - 1;
  expect(dump('11').split('BLOCK_GROUP_ITEM').length - 1).toBe(chunks);
}

export const TARGETS: Target[] = [
  { name: 'defaults', mkfs: [], size: '512M', expect: 'received' },
  { name: '-O ^no-holes', mkfs: ['-O', '^no-holes'], size: '512M', expect: 'received' },
  { name: '-O ^extref', mkfs: ['-O', '^extref'], size: '512M', expect: 'received' },
  // tree block extents as EXTENT_ITEMs with a tree_block_info (tree-block-item.ts); kernel-used first: its
  // snapshot leaves shared blocks with several references in that form, which the receive reads and rewrites
  { name: '-O ^skinny-metadata, kernel-used', mkfs: ['-O', '^skinny-metadata'], size: '160M', kernelUsed: true, expect: 'received', workout: true, after: noMetadataItems },
  // no free space tree: nothing cached yet (cache_generation -1; block groups under 100 MiB get no cache)
  { name: '-R ^free-space-tree', mkfs: ['-R', '^free-space-tree'], size: '160M', expect: 'received', workout: true },
  // ... and a v1 space cache the kernel wrote (2 GiB: a data block group of 200 MiB gets one)
  { name: '-R ^free-space-tree, kernel-used (v1 space cache)', mkfs: ['-R', '^free-space-tree'], size: '2G', kernelUsed: true, expect: 'received', workout: true,
    checkSays: /^cache and super generation don't match, space cache will be invalidated$/m, after: cacheInodesInvalid },
  // quotas: qgroups marked inconsistent (check prints its note, no error); the workout's rescan recounts them
  { name: '-R quota', mkfs: ['-R', 'quota'], size: '160M', expect: 'received', workout: true, checkSays: /^Rescan hasn't been initial/m },
  // mixed block groups: data and tree blocks out of the same DATA|METADATA block groups (mixed-groups.ts)
  { name: '-M', mkfs: ['-M'], size: '160M', expect: 'received', workout: true },
  { name: '-O raid56', mkfs: ['-O', 'raid56'], size: '160M', expect: refused(/uses raid56/) },
  { name: '-O raid1c34', mkfs: ['-O', 'raid1c34'], size: '160M', expect: refused(/uses raid1c34/) },
  { name: '--csum xxhash', mkfs: ['--csum', 'xxhash'], size: '512M', expect: 'received' },
  { name: '--csum blake2', mkfs: ['--csum', 'blake2'], size: '512M', expect: 'received' },
  { name: '-n 4096 -s 4096', mkfs: ['-n', '4096', '-s', '4096'], size: '512M', expect: 'received' },
  { name: '-n 8192', mkfs: ['-n', '8192'], size: '512M', expect: 'received' },
  { name: '-n 65536', mkfs: ['-n', '65536'], size: '512M', expect: 'received' },
  { name: '-m single', mkfs: ['-m', 'single'], size: '512M', expect: 'received' },
  { name: '-d dup', mkfs: ['-d', 'dup'], size: '512M', expect: 'received' },
  // -M is mixed-bg; `-O mixed-bg` alone is refused by mkfs.btrfs itself (nodesize must equal sectorsize)
  // mkfs.btrfs 6.2: "minimum size for each btrfs device is 114294784"
  // block group items in tree 11 (block-group-tree.ts): needs a newer mkfs.btrfs than 6.2
  { name: '-O block-group-tree (mkfs.btrfs >= 6.3)', mkfs: ['-O', 'block-group-tree'], size: '512M', newerMkfs: true, expect: 'received', workout: true, after: blockGroupTreeItems },
  { name: 'minimum size (114294784 bytes)', mkfs: [], size: '114294784', expect: 'received' },
  { name: '2 TiB sparse file', mkfs: [], size: '2T', expect: 'received' },
  { name: 'kernel-used (files, snapshot, deletion)', mkfs: [], size: '512M', kernelUsed: true, expect: 'received' },
];
