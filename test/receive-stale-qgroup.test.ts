import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BTRFS_QGROUP_INFO_KEY, BTRFS_QGROUP_LIMIT_KEY, BTRFS_QGROUP_RELATION_KEY, BTRFS_QUOTA_TREE_OBJECTID } from '../src/image/structs/constants.js';
import { openFilesystem } from '../src/image/write/open.js';
import { FileDevice } from '../src/io/image-file.js';
import { CLI } from './helpers/image-harness.js';
import { STREAMS_DIR } from './helpers/streams.js';
import { btrfsCheck, checkProblems, kernelImage, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * A level-0 quota group can outlive its subvolume: kernels before 6.10 left a deleted subvolume's qgroup
 * behind (with its limits and its place under higher-level groups). The kernel's mount moves its next
 * subvolume id past such a qgroup when the qgroup's id is above it (btrfs_read_qgroup_config), and a
 * subvolume made at exactly a left-behind id gets that qgroup back emptied (add_qgroup_item). A receive
 * must pick the id the kernel's `btrfs subvolume create` picks on the same image, and never hand the new
 * subvolume the old one's limit. The left-behind qgroup is written here as such a kernel left it (its
 * INFO, a 1 MiB referenced limit, a relation to 1/100) into a kernel-made image with quotas on.
 */

const why = skipReason('mount');
if (why) console.warn(`receive-stale-qgroup: skipping: ${why}`);

let dir = '';
const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

/** A kernel image with quotas, subvolume 256 in group 1/100, and a qgroup 0/`stale` left behind. */
async function imageWithStaleQgroup(image: string, stale: bigint): Promise<void> {
  kernelImage(image, 'btrfs quota enable . && btrfs -q subvolume create a && btrfs qgroup create 1/100 . && btrfs qgroup assign 0/256 1/100 . 2>/dev/null; sync', '256M');
  const dev = FileDevice.open(image);
  const fs = await openFilesystem(dev, {});
  const quota = fs.tree(BTRFS_QUOTA_TREE_OBJECTID);
  const info = new Uint8Array(40);
  new DataView(info.buffer).setBigUint64(0, fs.transid, true);
  quota.put({ objectid: 0n, type: BTRFS_QGROUP_INFO_KEY, offset: stale }, info);
  const limit = new Uint8Array(40);
  new DataView(limit.buffer).setBigUint64(0, 1n, true); // BTRFS_QGROUP_LIMIT_MAX_RFER
  new DataView(limit.buffer).setBigUint64(8, 1n << 20n, true);
  quota.put({ objectid: 0n, type: BTRFS_QGROUP_LIMIT_KEY, offset: stale }, limit);
  const group = (1n << 48n) | 100n;
  quota.put({ objectid: stale, type: BTRFS_QGROUP_RELATION_KEY, offset: group }, new Uint8Array(0));
  quota.put({ objectid: group, type: BTRFS_QGROUP_RELATION_KEY, offset: stale }, new Uint8Array(0));
  fs.commit();
  dev.close();
}

/** The kernel's `btrfs subvolume list` and `qgroup show -re -p --raw` after `script` in a mount of `image`. */
function kernelView(image: string, script = ''): { list: string; qgroups: string } {
  const m = mount(image);
  try {
    if (script) execFileSync('sh', ['-e', '-c', script], { cwd: m.dir, stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
    const list = execFileSync('btrfs', ['subvolume', 'list', m.dir], { encoding: 'utf8' }).replace(/ gen \d+/g, '');
    const qgroups = execFileSync('btrfs', ['qgroup', 'show', '-re', '-p', '--raw', m.dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { list, qgroups };
  } finally {
    m.umount();
  }
}

/** Ids, limits and parents of the qgroup table (the counts are a rescan's: the receive marks them inconsistent). */
const limitsOf = (table: string): string[] => table.split('\n').slice(2).filter(Boolean).map((l) => {
  const f = l.trim().split(/\s+/);
  return [f[0], f[3], f[4], f[5]].join(' ');
});

describe.skipIf(why)('receive next to a qgroup its deleted subvolume left behind', () => {
  beforeAll(() => {
    dir = tmpDir('btrfs-ts-stale-qgroup-');
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const [stale, what] of [[258n, 'above the next id: skipped, as the kernel skips it'], [257n, 'at the next id: reused emptied, as the kernel reuses it']] as const) {
    it(`0/${stale}, ${what}`, async () => {
      const image = join(dir, `stale-${stale}.img`);
      await imageWithStaleQgroup(image, stale);
      const kernelCopy = `${image}.kernel`;
      copyFileSync(image, kernelCopy);
      // the oracle: the kernel makes a subvolume named as the stream's (sample.stream sends "sample")
      const kernel = kernelView(kernelCopy, 'btrfs -q subvolume create sample');

      const r = cli(['receive', '-q', '-f', join(STREAMS_DIR, 'sample.stream'), image]);
      expect(r.status, r.stderr).toBe(0);
      const c = btrfsCheck(image);
      expect(c.status, c.output).toBe(0);
      expect(checkProblems(c.output)).toEqual([]);
      const ours = kernelView(image);
      expect(ours.list).toBe(kernel.list);
      expect(limitsOf(ours.qgroups)).toEqual(limitsOf(kernel.qgroups));
      // what the kernel's table shows: the new subvolume has no limit, a qgroup left above it keeps its own
      const newId = /ID (\d+) .*path sample$/m.exec(ours.list)![1];
      expect(limitsOf(ours.qgroups)).toContain(`0/${newId} none none ${stale === 257n ? '1/100' : '-'}`);
      if (stale === 258n) expect(limitsOf(ours.qgroups)).toContain('0/258 1048576 none 1/100');
      rmSync(kernelCopy);
    });
  }
});
