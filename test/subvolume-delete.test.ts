import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_TREE_OBJECTID } from '../src/image/structs/constants.js';
import { decodeRootItem } from '../src/image/structs/tree-items.js';
import { openFilesystem } from '../src/image/write/open.js';
import { FileDevice } from '../src/io/image-file.js';
import { checkClean, cli, sh, sha } from './helpers/subvolume-oracle.js';
import { STREAMS_DIR } from './helpers/streams.js';
import { btrfsCheck, checkProblems, manifestOf, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * `btrfs-ts subvolume delete IMAGE PATH...` against the kernel's `btrfs subvolume delete` + `subvolume
 * sync` of a copy: the kernel made the images (4 KiB nodes, so that a few thousand files make trees of
 * three levels, snapshots sharing nodes and leaves at every level; one without skinny metadata), with a
 * subvolume, read-only snapshots of it taken before and after changes, a writable snapshot of a snapshot
 * changed after and snapshotted again, the subvolume changed after its last snapshot, reflinks across
 * subvolumes, compressed and plain extents. For each
 * set of deletions: btrfs check (with data checksums) finds nothing, the subvolumes left and their trees
 * are the kernel's, and the data space in use is the kernel's to the byte once its cleaner is done. Then
 * the kernel keeps using an image btrfs-ts deleted from (scrub, full balance, its own snapshot and delete),
 * quotas (the deleted subvolume's qgroup gone as the kernel removes it; `quota rescan` then counts what the
 * kernel's own delete leaves), a received chain, and the refusals, which leave the image as it was.
 */

const why = skipReason('mount');
if (why) console.warn(`subvolume-delete: skipping: ${why}`);

let dir = '';


/** `script` run by sh in a mount of `image` (mount options `opts`), unmounted after; its output. */
function inMount(image: string, script: string, opts = 'rw'): string {
  const m = mount(image, opts);
  try {
    return sh(m.dir, script);
  } finally {
    m.umount();
  }
}

/** A kernel-made image with `mkfsArgs`, `script` run in its mount. */
function kernelMade(image: string, mkfsArgs: string[], script: string): void {
  execFileSync('truncate', ['-s', '320M', image]);
  execFileSync('mkfs.btrfs', ['-q', ...mkfsArgs, image]);
  inMount(image, script, 'compress=zstd');
}

const SUBVOLS = `
  btrfs -q subvolume create a
  for d in $(seq 1 12); do mkdir a/d$d; for i in $(seq 1 150); do
    case $((i % 4)) in 0) head -c 300 /dev/urandom ;; 1) seq 1 $((i * 40)) ;; 2) head -c $((i * 700)) /dev/urandom ;; 3) head -c 70000 /dev/urandom ;; esac > a/d$d/f$i
  done; done
  btrfs -q subvolume snapshot -r a s1
  for d in $(seq 1 12 3); do for i in $(seq 1 150 5); do head -c 3000 /dev/urandom >> a/d$d/f$i; done; done
  for i in $(seq 2 150 2); do rm a/d5/f$i; done
  btrfs -q subvolume snapshot -r a s2
  btrfs -q subvolume snapshot s1 w1
  for d in $(seq 2 12 4); do for i in $(seq 1 150 9); do dd if=/dev/urandom of=w1/d$d/f$i bs=1000 seek=1 count=5 conv=notrunc status=none; done; done
  cp -r --reflink=always s2/d2 w1/copied; head -c 2000000 /dev/urandom > w1/big
  btrfs -q subvolume snapshot -r w1 s3
  for i in $(seq 1 150 11); do echo tail >> a/d7/f$i; done; head -c 500000 /dev/urandom > a/after
  sync`;

/** The list, trees and data usage of a mount, for comparing two images. */
async function view(mnt: string, withTrees: boolean): Promise<{ list: string; trees: Record<string, string>; data: string }> {
  const list = execFileSync('btrfs', ['subvolume', 'list', mnt], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => l.replace(/ gen \d+/, ''));
  const trees: Record<string, string> = {};
  for (const l of withTrees ? list : []) {
    const p = l.split(' ').pop()!;
    trees[p] = createHash('sha256').update((await manifestOf(join(mnt, p))).join('\n')).digest('hex');
  }
  const data = execFileSync('btrfs', ['filesystem', 'df', '-b', mnt], { encoding: 'utf8' }).split('\n').find((l) => l.startsWith('Data'))!;
  return { list: list.join('\n'), trees, data };
}

/** Our delete of `paths` from a copy of `image`, and the kernel's from another: both views, the check. */
async function bothDeletes(image: string, paths: string[], withTrees = false): Promise<{ ours: Awaited<ReturnType<typeof view>>; kernel: Awaited<ReturnType<typeof view>>; check: string; out: string }> {
  const ours = join(dir, 'ours.img');
  const theirs = join(dir, 'theirs.img');
  copyFileSync(image, ours);
  copyFileSync(image, theirs);
  const r = cli(['subvolume', 'delete', ours, ...paths]);
  expect(r.status, r.stderr).toBe(0);
  const check = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', ours], { encoding: 'utf8' });
  expect(check.status, check.stderr).toBe(0);
  const k = mount(theirs);
  try {
    // -c: the commit wakes the kernel's cleaner now, not at the next periodic commit (30 s)
    for (const p of paths) execFileSync('btrfs', ['subvolume', 'delete', '-c', join(k.dir, p)], { stdio: 'ignore' });
    execFileSync('btrfs', ['subvolume', 'sync', k.dir], { stdio: 'ignore' });
  } finally {
    k.umount();
  }
  const views = [];
  for (const img of [ours, theirs]) {
    const m = mount(img, 'ro');
    try {
      views.push(await view(m.dir, withTrees));
    } finally {
      m.umount();
    }
  }
  return { ours: views[0]!, kernel: views[1]!, check: `${check.stdout}\n${check.stderr}`, out: r.stdout };
}

beforeAll(() => {
  if (why) return;
  dir = tmpDir('btrfs-ts-subvol-delete-');
  kernelMade(join(dir, 'deep.img'), ['-n', '4096'], SUBVOLS);
  kernelMade(join(dir, 'fat.img'), ['-n', '4096', '-O', '^skinny-metadata'], SUBVOLS);
}, 240_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(why !== undefined)('btrfs-ts subvolume delete against the kernel\'s delete and cleaner', () => {
  it('the image is as deep as meant: three-level trees whose nodes the snapshots share', () => {
    const top = sh(dir, 'btrfs inspect-internal dump-tree -t 256 deep.img | head -n 3');
    expect(top).toMatch(/^node \d+ level 2 /m);
  });

  // the trees left are read whole (every file, through the kernel) where the deletions leave most of them
  for (const [paths, withTrees] of [[['s1'], false], [['a'], true], [['w1'], false], [['a', 's1', 'w1'], true]] as const) {
    it(`deletes ${paths.join(', ')}: what the kernel's delete leaves, check clean`, async () => {
      const r = await bothDeletes(join(dir, 'deep.img'), [...paths], withTrees);
      expect(checkProblems(r.check)).toEqual([]);
      expect(r.ours.list).toBe(r.kernel.list);
      expect(r.ours.trees).toEqual(r.kernel.trees);
      expect(r.ours.data).toBe(r.kernel.data);
      expect(r.out).toBe(paths.map((p) => `Delete subvolume (commit): '${p}'\n`).join(''));
    }, 120_000);
  }

  it('an image without skinny metadata (tree block references in EXTENT_ITEMs)', async () => {
    const r = await bothDeletes(join(dir, 'fat.img'), ['a', 's2']);
    expect(checkProblems(r.check)).toEqual([]);
    expect(r.ours.list).toBe(r.kernel.list);
    expect(r.ours.trees).toEqual(r.kernel.trees);
    expect(r.ours.data).toBe(r.kernel.data);
  }, 120_000);

  // other layouts: checksums of 8 and 32 bytes per sector in the csum items the freed extents leave, 64 KiB
  // nodes, lzo; data and metadata in one block group (whose use, tree blocks included, depends on how each
  // side copied the trees on the way: compared where data has groups of its own)
  for (const [name, mkfs, opts] of [
    ['--csum xxhash -n 65536, lzo', ['--csum', 'xxhash', '-n', '65536'], 'compress=lzo'],
    ['--csum sha256, zstd', ['--csum', 'sha256'], 'compress=zstd'],
    ['--mixed', ['--mixed'], 'compress=zstd'],
  ] as const) {
    it(`an image made with ${name}`, async () => {
      const img = join(dir, 'layout.img');
      execFileSync('truncate', ['-s', '256M', img]);
      execFileSync('mkfs.btrfs', ['-q', '-f', ...mkfs, img], { stdio: 'ignore' });
      inMount(img, `btrfs -q subvolume create a; for i in $(seq 1 300); do head -c $((i * 300)) /dev/urandom > a/f$i; done
        btrfs -q subvolume snapshot -r a s1; for i in $(seq 1 300 3); do echo x >> a/f$i; done; rm a/f2*
        btrfs -q subvolume snapshot -r a s2; head -c 2000000 /dev/urandom > a/big; sync`, opts);
      for (const paths of [['s1'], ['s2', 'a']]) {
        const r = await bothDeletes(img, paths);
        expect(checkProblems(r.check)).toEqual([]);
        expect(r.ours.list).toBe(r.kernel.list);
        if (!mkfs.includes('--mixed')) expect(r.ours.data).toBe(r.kernel.data);
      }
    }, 120_000);
  }

  it('the space the deleted subvolumes alone held is free: the data in use drops to what is left', async () => {
    const r = await bothDeletes(join(dir, 'deep.img'), ['s3', 'w1', 's2', 's1'], true);
    expect(checkProblems(r.check)).toEqual([]);
    expect(r.ours.list).toBe(r.kernel.list);
    expect(r.ours.trees).toEqual(r.kernel.trees);
    expect(r.ours.data).toBe(r.kernel.data);
    const used = (l: string): bigint => BigInt(/used=(\d+)/.exec(l)![1]!);
    const before = mount(join(dir, 'deep.img'), 'ro');
    let had: bigint;
    try {
      had = used((await view(before.dir, false)).data);
    } finally {
      before.umount();
    }
    // w1 and s3 held 2 MB of their own (w1/big) and the ranges rewritten in w1
    expect(had - used(r.ours.data)).toBeGreaterThan(1n << 20n);
  }, 120_000);

  it('the kernel keeps using the image: scrub, full balance, its own snapshot and delete; check clean after', () => {
    const img = join(dir, 'used.img');
    copyFileSync(join(dir, 'deep.img'), img);
    expect(cli(['subvolume', 'delete', '-q', img, 's1', 'a']).status).toBe(0);
    const scrub = inMount(img, 'btrfs scrub start -B .; btrfs balance start --full-balance . >/dev/null; btrfs -q subvolume snapshot -r w1 s4; btrfs -q subvolume delete -c s2; btrfs subvolume sync . >/dev/null');
    expect(scrub).toMatch(/Error summary:\s+no errors found/);
    checkClean(img);
  }, 180_000);

  it('quotas: the deleted subvolume\'s qgroup goes as the kernel removes it; quota rescan then counts what the kernel\'s delete leaves', () => {
    const img = join(dir, 'quota.img');
    copyFileSync(join(dir, 'deep.img'), img);
    inMount(img, 'btrfs quota enable .; btrfs quota rescan -w . >/dev/null; btrfs qgroup create 1/100 .; btrfs qgroup assign --no-rescan 0/257 1/100 .; btrfs qgroup assign --no-rescan 0/258 1/100 .; btrfs quota rescan -w . >/dev/null');
    const theirs = join(dir, 'quota-kernel.img');
    copyFileSync(img, theirs);
    expect(cli(['subvolume', 'delete', '-q', img, 's1']).status).toBe(0);
    expect(cli(['quota', 'rescan', '-q', img]).status).toBe(0);
    const c = btrfsCheck(img);
    expect(c.status, c.output).toBe(0);
    expect(c.output).not.toMatch(/are different|inconsistent/i);
    const kernelTable = inMount(theirs, 'btrfs subvolume delete -c s1 >/dev/null; btrfs subvolume sync . >/dev/null; btrfs qgroup show -p --raw .');
    expect(kernelTable).not.toMatch(/0\/257/);
    expect(inMount(img, 'btrfs qgroup show -p --raw .', 'ro')).toBe(kernelTable);
  }, 180_000);

  it('a chain btrfs-ts received: the parent deleted, the child unchanged, the parent received again', async () => {
    const img = join(dir, 'chain.img');
    rmSync(img, { force: true });
    for (const s of ['zstd-v2.stream', 'incr-zstd-v2.stream']) expect(cli(['receive', '-q', '-f', join(STREAMS_DIR, s), img]).status).toBe(0);
    const names = cli(['subvolume', 'list', img]).stdout.split('\n').filter(Boolean).map((l) => l.split(' ').pop()!);
    expect(names.length).toBe(2);
    const before = cli(['manifest', '--path', names[1]!, img]);
    expect(before.status, before.stderr).toBe(0);
    expect(cli(['subvolume', 'delete', '-q', img, names[0]!]).status).toBe(0);
    expect(cli(['manifest', '--path', names[1]!, img]).stdout).toBe(before.stdout);
    expect(cli(['receive', '-q', '-f', join(STREAMS_DIR, 'zstd-v2.stream'), img]).status).toBe(0);
    const c = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
    expect(c.status, c.stderr).toBe(0);
    expect(checkProblems(`${c.stdout}\n${c.stderr}`)).toEqual([]);
  }, 120_000);

  it('the kernel deletes days of a chain btrfs-ts received, and of one an older btrfs-ts received (rekeyed at the next change)', async () => {
    // the kernel sends a 4-day chain of a tree deep enough (4 KiB nodes) that every day owns and shares nodes
    const src = join(dir, 'chain-src.img');
    kernelMade(src, ['-n', '4096'], `
      btrfs -q subvolume create v; for i in $(seq 1 1500); do seq 1 $((i % 50 * 30)) > v/f$i; done
      btrfs -q subvolume snapshot -r v day1
      for d in 2 3 4; do for i in $(seq $d 7 1500); do echo "day $d" >> v/f$i; done; btrfs -q subvolume snapshot -r v day$d; done
      btrfs send -q -f ${dir}/day1.stream day1; for d in 2 3 4; do btrfs send -q -p day$((d - 1)) -f ${dir}/day$d.stream day$d; done`);
    const chain = join(dir, 'chain4.img');
    execFileSync('truncate', ['-s', '320M', chain]);
    execFileSync('mkfs.btrfs', ['-q', '-n', '4096', chain]);
    for (const d of [1, 2, 3, 4]) expect(cli(['receive', '-q', '-f', join(dir, `day${d}.stream`), chain]).status).toBe(0);
    const old = join(dir, 'chain4-old.img');
    copyFileSync(chain, old);
    const kernelDeletes = (img: string, days: string[]): void => {
      inMount(img, `btrfs subvolume delete -c ${days.join(' ')} >/dev/null; btrfs subvolume sync . >/dev/null`);
      checkClean(img);
    };
    kernelDeletes(chain, ['day2', 'day3']);
    // an image as btrfs-ts received it before: snapshots keyed with the transaction that made and changed them
    const keyedOwn = async (img: string): Promise<void> => {
      const dev = FileDevice.open(img);
      try {
        const fs = await openFilesystem(dev, { growable: false });
        const t = fs.tree(BTRFS_ROOT_TREE_OBJECTID);
        for (const it of t.range({ objectid: 256n, type: BTRFS_ROOT_ITEM_KEY, offset: 0n }, { objectid: 1n << 40n, type: BTRFS_ROOT_ITEM_KEY, offset: 0n })) {
          if (it.key.type !== BTRFS_ROOT_ITEM_KEY || it.key.offset === 0n) continue;
          t.delete(it.key);
          t.put({ ...it.key, offset: decodeRootItem(it.data).otransid }, it.data);
        }
        fs.commit();
      } finally {
        dev.close();
      }
    };
    await keyedOwn(old);
    const before = sh(dir, 'btrfs inspect-internal dump-tree -t 1 chain4-old.img | grep "key (2[0-9][0-9] ROOT_ITEM [1-9]"');
    const cgens = cli(['subvolume', 'list', old]).stdout.split('\n').filter((l) => / cgen /.test(l) && !/ path day1$/.test(l)).map((l) => BigInt(/ cgen (\d+)/.exec(l)![1]!));
    const offsets = (t: string): bigint[] => [...t.matchAll(/ROOT_ITEM (\d+)\)/g)].map((x) => BigInt(x[1]!));
    // what a user of such an image is told, and the fix named for it (on a copy)
    const listed = cli(['subvolume', 'list', old]);
    expect(listed.status).toBe(0);
    expect(listed.stderr).toMatch(/^btrfs-ts: WARNING: 3 received subvolumes are keyed as an earlier btrfs-ts keyed them: .*btrfs-ts rescue fix-snapshot-keys .*chain4-old\.img` first\n$/);
    expect(cli(['subvolume', 'show', old, 'day3']).stderr).toMatch(/WARNING: 1 received subvolume is keyed/);
    const fixed = join(dir, 'chain4-fixed.img');
    copyFileSync(old, fixed);
    const fix = cli(['rescue', 'fix-snapshot-keys', fixed]);
    expect(fix.status, fix.stderr).toBe(0);
    expect(fix.stdout).toMatch(/^(rekeyed subvolume \d+ \(day[234]\): ROOT_ITEM offset \d+ -> \d+\n){3}$/);
    expect(offsets(sh(dir, 'btrfs inspect-internal dump-tree -t 1 chain4-fixed.img | grep "key (2[0-9][0-9] ROOT_ITEM [1-9]"'))).toEqual(cgens.map((o) => o - 1n));
    expect(cli(['subvolume', 'list', fixed]).stderr).toBe('');
    const fixedHash = sha(fixed);
    expect(cli(['rescue', 'fix-snapshot-keys', fixed]).stdout).toBe('no subvolume to rekey\n');
    expect(sha(fixed)).toBe(fixedHash);
    checkClean(fixed);
    rmSync(fixed);
    // any change through btrfs-ts rekeys them (here: deleting day1), and the kernel can delete the rest
    expect(cli(['subvolume', 'delete', '-q', old, 'day1']).status).toBe(0);
    const after = sh(dir, 'btrfs inspect-internal dump-tree -t 1 chain4-old.img | grep "key (2[0-9][0-9] ROOT_ITEM [1-9]"');
    expect(offsets(before)).toEqual(cgens); // as an older btrfs-ts left them: keyed with their otransid
    expect(offsets(after)).toEqual(cgens.map((o) => o - 1n));
    kernelDeletes(old, ['day2', 'day3']);
  }, 180_000);

  it('refuses as the kernel does, one line, exit 1, the image byte for byte as it was', () => {
    const img = join(dir, 'refuse.img');
    copyFileSync(join(dir, 'deep.img'), img);
    inMount(img, 'btrfs -q subvolume create a/nested; btrfs -q subvolume create box; btrfs -q subvolume create box/inner; btrfs property set box ro true; btrfs subvolume set-default w1');
    const hash = sha(img);
    const cases: [string[], RegExp][] = [
      [['/'], /top-level subvolume/],
      [['w1'], /default subvolume.*Operation not permitted/],
      [['a'], /holds subvolume \d+.*Directory not empty/],
      [['box/inner'], /parent subvolume \d+ is read-only: Read-only file system/],
      [['nowhere'], /no subvolume at path "nowhere"/],
      [['a/d1'], /no subvolume at path "a\/d1"/],
      [['s1', 's1'], /named twice/],
      [['s1', 'a'], /Directory not empty/],
      [['-i', '999'], /no subvolume with id 999/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(['subvolume', 'delete', img, ...args]);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(sha(img), args.join(' ')).toBe(hash);
    }
    expect(cli(['subvolume', 'delete', img]).status).toBe(2);
    // --subvolid names it as well as a path does (-c, btrfs-progs' commit-after, is taken and changes nothing)
    const r = cli(['subvolume', 'delete', '-c', '-i', '260', img]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("Delete subvolume (commit): 's3'\n");
    // a subvolume named before the one holding it: both go, in that order, at one commit
    const both = cli(['subvolume', 'delete', img, 'a/nested', 'a']);
    expect(both.status, both.stderr).toBe(0);
    expect(both.stdout).toBe("Delete subvolume (commit): 'a/nested'\nDelete subvolume (commit): 'a'\n");
    checkClean(img);
  }, 120_000);
});
