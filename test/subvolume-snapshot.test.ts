import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkClean, cli, sh, sha } from './helpers/subvolume-oracle.js';
import { makeTreeLogImage } from './helpers/tree-log-image.js';
import { btrfsCheck, manifestOf, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * `btrfs-ts subvolume snapshot / create / get-default / set-default` and `property get/set ro` against the
 * kernel doing the same on a copy of the image (the oracle): kernel-made images with 4 KiB nodes (trees of
 * several levels that the snapshot shares), and a chain btrfs-ts received from kernel sends. After each
 * change: btrfs check (with data checksums) clean, the kernel's `subvolume list -a -q -u -R` the same but
 * for uuids and generations, the same read-only flags (`btrfs property get`), the same snapshot list, the
 * same default, the snapshot's manifest the source's and the kernel's snapshot's; then the kernel uses the
 * result (writes into a writable snapshot and deletes it, sends an incremental from a snapshot btrfs-ts made,
 * scrubs) and check is clean again. Refusals leave the image byte for byte as it was.
 */

const why = skipReason('mount');
if (why) console.warn(`subvolume-snapshot: skipping: ${why}`);

let dir = '';

function inMount<T = string>(image: string, script: string | ((mnt: string) => T | Promise<T>), opts = 'rw'): T | Promise<T> {
  const m = mount(image, opts);
  let async = false;
  try {
    if (typeof script === 'string') return sh(m.dir, script) as T;
    const r = script(m.dir);
    if (r instanceof Promise) {
      async = true;
      return r.finally(() => m.umount());
    }
    return r;
  } finally {
    if (!async) m.umount();
  }
}

const BASE = `
  btrfs -q subvolume create a
  for d in $(seq 1 8); do mkdir a/d$d; for i in $(seq 1 150); do
    case $((i % 3)) in 0) head -c 300 /dev/urandom ;; 1) seq 1 $((i * 40)) ;; 2) head -c $((i * 500)) /dev/urandom ;; esac > a/d$d/f$i
  done; done
  ln -s d1/f1 a/link; mkfifo a/fifo; setfattr -n user.x -v y a/d2/f2 2>/dev/null || true
  btrfs -q subvolume snapshot -r a s1
  for i in $(seq 1 150 7); do echo more >> a/d3/f$i; done; rm a/d4/f1*; head -c 300000 /dev/urandom > a/big
  mkdir a/box snaps
  btrfs -q subvolume create holder; btrfs -q subvolume create holder/inner; echo in > holder/inner/f; echo top > holder/g
  btrfs property set holder compression lzo; mkdir holder/x; btrfs property set holder/x compression zstd
  btrfs -q subvolume create ro; btrfs property set ro ro true
  sync`;

/** What the kernel shows of an image: the subvolume list (uuids and generations left out), snapshots, ro flags, default. */
function kernelView(image: string): { list: string; snapshots: string; ro: string; dflt: string } {
  return inMount(image, (mnt) => {
    const out = (args: string[]): string => execFileSync('btrfs', args, { encoding: 'utf8' });
    const lines = out(['subvolume', 'list', '-a', '-q', '-u', '-R', mnt]).split('\n').filter(Boolean);
    const list = lines.map((l) => l.replace(/ gen \d+/, '').replace(/ uuid \S+/, ' uuid *')).join('\n');
    const snapshots = out(['subvolume', 'list', '-s', mnt]).split('\n').filter(Boolean).map((l) => l.split(' ').pop()).join('\n');
    const paths = lines.map((l) => l.split(' ').pop()!.replace(/^<FS_TREE>\//, ''));
    const ro = paths.map((p) => `${p} ${out(['property', 'get', join(mnt, p), 'ro']).trim()}`).join('\n');
    const dflt = out(['subvolume', 'get-default', mnt]).replace(/ gen \d+/, '');
    return { list, snapshots, ro, dflt };
  }, 'ro,subvolid=5') as ReturnType<typeof kernelView>;
}

/** Our command on one copy of `image`, `kernel` (sh in its mount) on another: the result, both paths. */
function both(image: string, args: string[], kernel: string): { ours: string; theirs: string; out: string } {
  const ours = join(dir, 'ours.img');
  const theirs = join(dir, 'theirs.img');
  copyFileSync(image, ours);
  copyFileSync(image, theirs);
  const r = cli([...args.slice(0, 2), ours, ...args.slice(2)]);
  expect(r.status, r.stderr).toBe(0);
  inMount(theirs, kernel);
  return { ours, theirs, out: r.stdout };
}

/** The ctransid of each subvolume's ROOT_ITEM (the kernel's btrfs_update_root_times stamps a changed one). */
const ctransids = (img: string): string[] => [...sh(dir, `btrfs inspect-internal dump-tree -t 1 ${img}`)
  .matchAll(/key \((\S+) ROOT_ITEM \d+\)[^]*?ctransid (\d+)/g)].map((m) => `${m[1]} ${m[2]}`);

function sameAsKernel(r: { ours: string; theirs: string }): void {
  checkClean(r.ours);
  expect(kernelView(r.ours)).toEqual(kernelView(r.theirs));
  expect(ctransids(r.ours)).toEqual(ctransids(r.theirs));
}

async function manifest(image: string, path: string): Promise<string> {
  return (await inMount(image, (mnt) => manifestOf(join(mnt, path)), 'ro,subvolid=5')).join('\n');
}

beforeAll(() => {
  if (why) return;
  dir = tmpDir('btrfs-ts-subvol-snapshot-');
  const img = join(dir, 'base.img');
  execFileSync('truncate', ['-s', '320M', img]);
  execFileSync('mkfs.btrfs', ['-q', '-n', '4096', img]);
  inMount(img, BASE, 'compress=zstd');
}, 240_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(why !== undefined)('btrfs-ts subvolume snapshot / create against the kernel\'s', () => {
  it('the image is as deep as meant: trees of several levels', () => {
    expect(sh(dir, 'btrfs inspect-internal dump-tree -t 256 base.img | head -n 3')).toMatch(/^node \d+ level [12] /m);
  });

  it('snapshot -r a s2: what the kernel makes; its tree the source\'s; its ROOT_ITEM keyed with its transaction', async () => {
    const r = both(join(dir, 'base.img'), ['subvolume', 'snapshot', '-r', 'a', 's2'], 'btrfs -q subvolume snapshot -r a s2');
    expect(r.out).toBe("Create a readonly snapshot of 'a' in './s2'\n");
    sameAsKernel(r);
    const m = await manifest(r.ours, 's2');
    expect(m).toBe(await manifest(r.ours, 'a'));
    expect(m).toBe(await manifest(r.theirs, 's2'));
    // keyed as the kernel keys it: the otransid (cgen)
    for (const img of [r.ours, r.theirs]) {
      const [, id, cgen] = /^ID (\d+) gen \d+ cgen (\d+) .* path s2$/m.exec(cli(['subvolume', 'list', img]).stdout)!;
      expect(id).toBe('261');
      expect(new RegExp(`key \\(${id} ROOT_ITEM (\\d+)\\)`).exec(sh(dir, `btrfs inspect-internal dump-tree -t 1 ${img}`))![1]).toBe(cgen);
    }
  }, 120_000);

  it('the kernel sends an incremental from a snapshot btrfs-ts made (-p its source\'s older snapshot), scrubs clean, deletes the source, balances', async () => {
    const r = both(join(dir, 'base.img'), ['subvolume', 'snapshot', '-r', 'a', 's2'], 'true');
    const scrub = inMount(r.ours, `btrfs scrub start -B . ; btrfs send -q -f ${dir}/s1.stream s1; btrfs send -q -p s1 -f ${dir}/s2.stream s2;
      btrfs -q subvolume snapshot -r s2 s3; btrfs send -q -p s2 -f ${dir}/s3.stream s3`) as string;
    expect(scrub).toMatch(/Error summary:\s+no errors found/);
    const dst = join(dir, 'sent.img');
    execFileSync('truncate', ['-s', '320M', dst]);
    execFileSync('mkfs.btrfs', ['-q', '-f', dst]);
    inMount(dst, `for s in s1 s2 s3; do btrfs receive -q -f ${dir}/$s.stream .; done`);
    const want = await manifest(r.ours, 'a');
    expect(await manifest(dst, 's2')).toBe(want);
    expect(await manifest(dst, 's3')).toBe(want);
    checkClean(r.ours);
    // the source dropped by the kernel's cleaner, everything relocated by a full balance: the snapshot intact
    inMount(r.ours, 'btrfs -q subvolume delete -c a; btrfs subvolume sync . >/dev/null; btrfs balance start --full-balance . >/dev/null');
    checkClean(r.ours);
    expect(await manifest(r.ours, 's2')).toBe(want);
    // and btrfs-ts's own delete of the snapshot's parent and of the snapshot
    expect(cli(['subvolume', 'delete', '-q', r.ours, 's1', 's3', 's2']).status).toBe(0);
    checkClean(r.ours);
  }, 180_000);

  it('a writable snapshot into an existing directory: named after the source; the kernel writes into it and deletes it', async () => {
    const r = both(join(dir, 'base.img'), ['subvolume', 'snapshot', 's1', 'snaps'], 'btrfs -q subvolume snapshot s1 snaps');
    expect(r.out).toBe("Create a snapshot of 's1' in 'snaps/s1'\n");
    sameAsKernel(r);
    expect(await manifest(r.ours, 'snaps/s1')).toBe(await manifest(r.ours, 's1'));
    inMount(r.ours, `for i in $(seq 1 150 3); do echo w >> snaps/s1/d5/f$i; done; rm -r snaps/s1/d6; head -c 1000000 /dev/urandom > snaps/s1/new; sync`);
    checkClean(r.ours);
    expect(await manifest(r.ours, 's1')).toBe(await manifest(r.theirs, 's1'));
    inMount(r.ours, 'btrfs -q subvolume delete -c snaps/s1; btrfs subvolume sync . >/dev/null');
    checkClean(r.ours);
  }, 180_000);

  it('a snapshot placed inside its own source does not hold itself; nested subvolumes are empty directories in it', async () => {
    const r = both(join(dir, 'base.img'), ['subvolume', 'snapshot', 'a', 'a/box/self'], 'btrfs -q subvolume snapshot a a/box/self');
    sameAsKernel(r);
    expect(await manifest(r.ours, 'a/box/self')).toBe(await manifest(r.theirs, 'a/box/self'));
    const h = both(join(dir, 'base.img'), ['subvolume', 'snapshot', 'holder', 'h2'], 'btrfs -q subvolume snapshot holder h2');
    sameAsKernel(h);
    // (the kernel makes up a placeholder's times when it looks it up: those are left out)
    const masked = (m: string, names: string[]): string => m.split('\n').map((l) => (names.includes(l.split(' ')[0]!) ? l.replace(/ mtime=\S+/, '') : l)).join('\n');
    expect(masked(await manifest(h.ours, 'h2'), ['inner'])).toBe(masked(await manifest(h.theirs, 'h2'), ['inner']));
    expect(await manifest(h.ours, 'h2')).toMatch(/^inner dir /m);
    // the top level can be snapshotted too
    const t = both(join(dir, 'base.img'), ['subvolume', 'snapshot', '-r', '/', 'snaps/top'], 'btrfs -q subvolume snapshot -r . snaps/top');
    sameAsKernel(t);
    const tops = ['a', 's1', 'holder', 'ro'];
    expect(masked(await manifest(t.ours, 'snaps/top'), tops)).toBe(masked(await manifest(t.theirs, 'snaps/top'), tops));
  }, 180_000);

  it('subvolume create PATH...: what the kernel creates, one inside the other at one commit; the kernel writes into them', () => {
    const r = both(join(dir, 'base.img'), ['subvolume', 'create', 'n1', 'n1/inner', 'a/box/c'],
      'btrfs -q subvolume create n1; btrfs -q subvolume create n1/inner; btrfs -q subvolume create a/box/c');
    expect(r.out).toBe("Create subvolume './n1'\nCreate subvolume 'n1/inner'\nCreate subvolume 'a/box/c'\n");
    sameAsKernel(r);
    const ls = (img: string): string => inMount(img, 'ls -la --time-style=+ n1 n1/inner a/box/c | sed "s/ [A-Z][a-z][a-z] .* / /"', 'ro') as string;
    expect(ls(r.ours)).toBe(ls(r.theirs));
    inMount(r.ours, 'seq 1 100000 > n1/inner/f; mkdir n1/d; cp -r a/d1 a/box/c/; sync');
    checkClean(r.ours);
    // the compression property of the subvolume holding the new one is inherited (btrfs_subvol_inherit_props)
    const p = both(join(dir, 'base.img'), ['subvolume', 'create', 'holder/x/n', 'holder/n2'],
      'btrfs -q subvolume create holder/x/n; btrfs -q subvolume create holder/n2');
    sameAsKernel(p);
    const props = (img: string): string => inMount(img, 'for s in holder/x/n holder/n2 a/box holder/x; do btrfs property get $s; done', 'ro') as string;
    expect(props(p.ours)).toBe(props(p.theirs));
    expect(props(p.ours)).toMatch(/compression=lzo/);
  }, 120_000);

  it('set-default / get-default: what the kernel sets and prints; a plain mount shows it', () => {
    const img = join(dir, 'dflt.img');
    copyFileSync(join(dir, 'base.img'), img);
    expect(cli(['subvolume', 'get-default', img]).stdout).toBe('ID 5 (FS_TREE)\n');
    for (const [target, kernel] of [['holder/inner', 'holder/inner'], ['257', '257 .']] as const) {
      const r = both(img, ['subvolume', 'set-default', target], `btrfs subvolume set-default ${kernel}`);
      sameAsKernel(r);
      const g = cli(['subvolume', 'get-default', r.ours]);
      expect(g.status, g.stderr).toBe(0);
      expect(g.stdout).toBe(inMount(r.theirs, 'btrfs subvolume get-default .', 'ro'));
      expect(inMount(r.ours, 'ls', 'ro')).toBe(inMount(r.theirs, 'ls', 'ro'));
      copyFileSync(r.ours, img);
    }
    expect(cli(['subvolume', 'set-default', img, '0']).status).toBe(0);
    expect(cli(['subvolume', 'get-default', img]).stdout).toBe('ID 5 (FS_TREE)\n');
    checkClean(img);
  }, 120_000);

  it('property get: what btrfs property get prints (ro, label, compression; without a name, every one that applies)', () => {
    const img = join(dir, 'props.img');
    copyFileSync(join(dir, 'base.img'), img);
    execFileSync('btrfs', ['filesystem', 'label', img, 'backups']);
    const paths = ['/', 'a', 'a/d1', 'a/d1/f1', 'holder', 'holder/x', 'ro', 'nowhere'];
    const names = [[], ['ro'], ['label'], ['compression'], ['rox']];
    const kernel = inMount(img, (mnt) => paths.flatMap((p) => names.map((n) => {
      const r = spawnSync('btrfs', ['property', 'get', join(mnt, p), ...n], { encoding: 'utf8' });
      return `${p} ${n.join('')}: ${r.status} ${r.stdout}`;
    })), 'ro,subvolid=5') as string[];
    const ours = paths.flatMap((p) => names.map((n) => {
      const r = cli(['property', 'get', img, p, ...n]);
      return `${p} ${n.join('')}: ${r.status} ${r.stdout}`;
    }));
    expect(ours).toEqual(kernel);
    expect(ours.join('\n')).toMatch(/label=backups/);
  }, 120_000);

  it('quotas: the snapshot\'s qgroup as btrfs_qgroup_inherit makes it (counts, limits), the status marked inconsistent; quota rescan counts what the kernel counts', () => {
    const img = join(dir, 'quota.img');
    copyFileSync(join(dir, 'base.img'), img);
    inMount(img, 'btrfs quota enable .; btrfs quota rescan -w . >/dev/null; btrfs qgroup limit 100M a; btrfs qgroup limit -e 50M a');
    const r = both(img, ['subvolume', 'snapshot', '-r', 'a', 's2'], 'btrfs -q subvolume snapshot -r a s2; btrfs -q subvolume create n; btrfs quota rescan -w . >/dev/null');
    const c = btrfsCheck(r.ours);
    expect(c.status, c.output).toBe(0);
    expect(c.output).toMatch(/Rescan hasn't been initial/);
    // the source's and the snapshot's groups are what the kernel's btrfs_qgroup_inherit makes: what check counts
    expect(c.output).not.toMatch(/qgroup id: 0\/(256|261) are different/);
    expect(cli(['subvolume', 'create', r.ours, 'n']).status).toBe(0);
    const c2 = btrfsCheck(r.ours);
    expect(c2.status, c2.output).toBe(0);
    expect(c2.output).toMatch(/Rescan hasn't been initial/);
    expect(c2.output).not.toMatch(/qgroup id: 0\/(256|261|262) are different/);
    expect(cli(['quota', 'rescan', '-q', r.ours]).status).toBe(0);
    checkClean(r.ours);
    const show = (i: string): string => inMount(i, 'btrfs qgroup show -r -e --raw .', 'ro') as string;
    expect(show(r.ours)).toBe(show(r.theirs));
    expect(show(r.ours)).toMatch(/^0\/261 .* 104857600 +52428800 /m);
  }, 120_000);
});

describe.skipIf(why !== undefined)('other layouts', () => {
  // tree block references in EXTENT_ITEMs (no skinny metadata), data and metadata in one block group, 64 KiB
  // nodes with 8-byte checksums
  for (const [name, mkfs] of [
    ['without skinny metadata', ['-n', '4096', '-O', '^skinny-metadata']],
    ['--mixed', ['--mixed']],
    ['-n 65536 --csum xxhash', ['-n', '65536', '--csum', 'xxhash']],
  ] as const) {
    it(`an image made ${name}: snapshots as the kernel's, which the kernel then changes, deletes and balances`, async () => {
      const img = join(dir, 'layout.img');
      execFileSync('truncate', ['-s', '256M', img]);
      execFileSync('mkfs.btrfs', ['-q', '-f', ...mkfs, img], { stdio: 'ignore' });
      inMount(img, `btrfs -q subvolume create a; for i in $(seq 1 600); do head -c $((i * 97 % 20000)) /dev/urandom > a/f$i; done
        btrfs -q subvolume snapshot -r a s1; for i in $(seq 1 600 5); do echo x >> a/f$i; done; sync`, 'compress=zstd');
      const r = both(img, ['subvolume', 'snapshot', '-r', 'a', 's2'], 'btrfs -q subvolume snapshot -r a s2');
      sameAsKernel(r);
      expect(await manifest(r.ours, 's2')).toBe(await manifest(r.ours, 'a'));
      expect(cli(['subvolume', 'snapshot', r.ours, 's1', 'w']).status).toBe(0);
      checkClean(r.ours);
      inMount(r.ours, `for i in $(seq 1 600 3); do echo y >> w/f$i; done; btrfs -q subvolume delete -c a; btrfs subvolume sync . >/dev/null
        btrfs balance start --full-balance . >/dev/null; btrfs -q subvolume delete -c w; btrfs subvolume sync . >/dev/null`);
      checkClean(r.ours);
      expect(await manifest(r.ours, 's2')).toBe(await manifest(r.theirs, 's2'));
    }, 180_000);
  }
});

describe.skipIf(why !== undefined)('a chain btrfs-ts received: snapshots of its days, property ro', () => {
  let chain = '';
  beforeAll(() => {
    if (why) return;
    const src = join(dir, 'chain-src.img');
    execFileSync('truncate', ['-s', '320M', src]);
    execFileSync('mkfs.btrfs', ['-q', '-n', '4096', src]);
    inMount(src, `btrfs -q subvolume create v; for i in $(seq 1 1200); do seq 1 $((i % 40 * 30)) > v/f$i; done
      btrfs -q subvolume snapshot -r v day1
      for d in 2 3; do for i in $(seq $d 7 1200); do echo "day $d" >> v/f$i; done; btrfs -q subvolume snapshot -r v day$d; done
      btrfs send -q -f ${dir}/day1.stream day1; for d in 2 3; do btrfs send -q -p day$((d - 1)) -f ${dir}/day$d.stream day$d; done`);
    chain = join(dir, 'chain.img');
    execFileSync('truncate', ['-s', '320M', chain]);
    execFileSync('mkfs.btrfs', ['-q', '-n', '4096', chain]);
    for (const d of [1, 2]) expect(cli(['receive', '-q', '-f', join(dir, `day${d}.stream`), chain]).status).toBe(0);
  }, 240_000);

  it('a read-only snapshot of a received day keeps its received uuid: an incremental receive finds its parent in it', async () => {
    const r = both(chain, ['subvolume', 'snapshot', '-r', 'day2', 'keep'], 'btrfs -q subvolume snapshot -r day2 keep');
    sameAsKernel(r);
    expect(kernelView(r.ours).list).toMatch(/received_uuid [0-9a-f-]{36} uuid \* path keep$/m);
    // indexed under its received uuid as the kernel indexes it (UUID tree: one subvolume more under day2's)
    const received = (img: string): string[] => sh(dir, `btrfs inspect-internal dump-tree -t 9 ${img}`).split(/\titem \d+ /)
      .filter((c) => /UUID_KEY_RECEIVED_SUBVOL/.test(c)).map((c) => c.replace(/itemoff \d+ itemsize \d+/, '').replace(/\s+/g, ' ').trim());
    expect(received(r.ours)).toEqual(received(r.theirs));
    expect(received(r.ours).join('\n')).toMatch(/subvol_id \d+ subvol_id \d+/);
    // day2 gone: its snapshot is the parent (looked up by received uuid), for btrfs-ts's receive and the kernel's
    expect(cli(['subvolume', 'delete', '-q', r.ours, 'day2']).status).toBe(0);
    copyFileSync(r.ours, r.theirs);
    const rc = cli(['receive', '-q', '-f', join(dir, 'day3.stream'), r.ours]);
    expect(rc.status, rc.stderr).toBe(0);
    inMount(r.theirs, `btrfs receive -q -f ${dir}/day3.stream .`);
    checkClean(r.ours);
    checkClean(r.theirs);
    const want = await manifest(join(dir, 'chain-src.img'), 'day3');
    expect(await manifest(r.ours, 'day3')).toBe(want);
    expect(await manifest(r.theirs, 'day3')).toBe(want);
  }, 180_000);

  it('a writable snapshot of a received day has no received uuid; the kernel writes into it and deletes it', async () => {
    const r = both(chain, ['subvolume', 'snapshot', 'day1', 'work'], 'btrfs -q subvolume snapshot day1 work');
    sameAsKernel(r);
    expect(await manifest(r.ours, 'work')).toBe(await manifest(r.ours, 'day1'));
    inMount(r.ours, 'for i in $(seq 1 1200 5); do echo edit >> work/f$i; done; rm work/f7*; sync');
    checkClean(r.ours);
    inMount(r.ours, 'btrfs -q subvolume delete -c work; btrfs subvolume sync . >/dev/null');
    checkClean(r.ours);
  }, 120_000);

  it('property get/set ro: ro->rw of a received day refused without -f; with -f the received uuid cleared as btrfs-progs clears it', () => {
    const img = join(dir, 'prop.img');
    copyFileSync(chain, img);
    expect(cli(['property', 'get', img, 'day1', 'ro']).stdout).toBe('ro=true\n');
    expect(cli(['property', 'get', img, 'day1']).stdout).toBe('ro=true\n');
    const hash = sha(img);
    const no = cli(['property', 'set', img, 'day1', 'ro', 'false']);
    expect(no.status).toBe(1);
    expect(no.stderr).toMatch(/cannot flip ro->rw with received_uuid set, use force if you really want that/);
    expect(sha(img)).toBe(hash);
    // the kernel refuses the same (btrfs-progs' check), and does the same with -f
    const theirs = join(dir, 'prop-kernel.img');
    copyFileSync(img, theirs);
    const kernelNo = inMount(theirs, 'btrfs property set day1 ro false 2>&1 || echo refused');
    expect(kernelNo).toMatch(/refused/);
    const yes = cli(['property', 'set', '-f', img, 'day1', 'ro', 'false']);
    expect(yes.status, yes.stderr).toBe(0);
    inMount(theirs, 'btrfs property set -f day1 ro false');
    checkClean(img);
    expect(kernelView(img)).toEqual(kernelView(theirs));
    const show = (i: string): string => (inMount(i, 'btrfs subvolume show day1', 'ro') as string).split('\n')
      .filter((l) => /UUID|Flags|Send transid|Gen at creation/.test(l) && !/^\s*UUID/.test(l)).join('\n');
    expect(show(img)).toBe(show(theirs));
    expect(show(img)).toMatch(/Received UUID:\s+-/);
    expect(cli(['property', 'get', img, 'day1', 'ro']).stdout).toBe('ro=false\n');
    // writable for the kernel; read-only again, then the same value again changes nothing
    inMount(img, 'echo x > day1/new; sync');
    expect(cli(['property', 'set', img, 'day1', 'ro', 'true']).status).toBe(0);
    const h2 = sha(img);
    expect(cli(['property', 'set', img, 'day1', 'ro', 'true']).status).toBe(0);
    expect(sha(img)).toBe(h2);
    expect(inMount(img, 'touch day1/y 2>&1 || echo refused')).toMatch(/Read-only file system/);
    checkClean(img);
  }, 180_000);
});

describe.skipIf(why !== undefined)('refusals', () => {
  it('refuses as btrfs-progs and the kernel do: one line, exit 1, the image byte for byte as it was', () => {
    const img = join(dir, 'refuse.img');
    copyFileSync(join(dir, 'base.img'), img);
    const hash = sha(img);
    const long = 'x'.repeat(256);
    const cases: [string[], RegExp][] = [
      [['subvolume', 'snapshot', img, 'a', 's1'], /cannot snapshot 'a': 's1' is in read-only subvolume 257: Read-only file system/],
      [['subvolume', 'snapshot', img, 'a', 'ro/x'], /Read-only file system/],
      [['subvolume', 'snapshot', img, 'a', '.'], /cannot snapshot 'a': '.\/a' exists: File exists/],
      [['subvolume', 'snapshot', img, 'holder/inner', 'holder'], /cannot snapshot 'holder\/inner': 'holder\/inner' exists: File exists/],
      [['subvolume', 'snapshot', img, 'a/d1', 'x'], /'a\/d1' is not a subvolume: Not a Btrfs subvolume/],
      [['subvolume', 'snapshot', img, 'nowhere', 'x'], /cannot access 'nowhere': No such file or directory/],
      [['subvolume', 'snapshot', img, 'a', 'a/d1/f1'], /'a\/d1\/f1' exists and it is not a directory/],
      [['subvolume', 'snapshot', img, 'a', 'no/x'], /cannot access 'no': No such file or directory/],
      [['subvolume', 'snapshot', img, 'a', 'snaps/..'], /'\.\.' is not supported/],
      [['subvolume', 'snapshot', img, '/', 'snaps'], /invalid snapshot name '\/'/],
      [['subvolume', 'snapshot', img, 'a', long], /snapshot name too long/],
      [['subvolume', 'snapshot', img, 'a', 'holder/inner/../x'], /'\.\.' is not supported/],
      [['subvolume', 'create', img, 'a'], /target path already exists: a/],
      [['subvolume', 'create', img, 'ro/x'], /cannot create subvolume: 'ro' is in read-only subvolume \d+: Read-only file system/],
      [['subvolume', 'create', img, 'n', 'n'], /target path already exists: n/],
      [['subvolume', 'create', img, 'n', 'a/d1/f1/x'], /is not a directory/],
      [['subvolume', 'create', img, long], /subvolume name too long/],
      [['subvolume', 'create', img, 'n/.'], /invalid subvolume name: \./],
      [['subvolume', 'snapshot', img, 'a', 'x/.'], /invalid snapshot name '\.'/],
      [['subvolume', 'create', img, '.'], /target path already exists: \./],
      [['subvolume', 'set-default', img, '999'], /no subvolume with id 999/],
      [['subvolume', 'set-default', img, '3'], /no subvolume with id 3/],
      [['subvolume', 'set-default', img, 'a/d1'], /not a subvolume/],
      [['property', 'set', img, 'a', 'ro', 'maybe'], /invalid value for property: maybe/],
      [['property', 'set', img, 'a/d1', 'ro', 'true'], /object is not compatible with property: ro/],
      [['property', 'set', img, 'nowhere', 'ro', 'true'], /failed to detect object type: No such file or directory/],
      [['property', 'get', img, 'a/d1', 'ro'], /object is not compatible with property: ro/],
      [['property', 'set', img, 'a', 'label', 'x'], /btrfs-ts sets only ro/],
      [['property', 'set', img, 'a', 'rox', 'x'], /unknown property: rox/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(args);
      const what = args.slice(0, 2).concat(args.slice(3)).join(' ');
      expect(r.status, what).toBe(1);
      expect(r.stderr.trim().split('\n'), what).toHaveLength(1);
      expect(r.stderr, what).toMatch(msg);
      expect(sha(img), what).toBe(hash);
    }
    // the image is as it was for the kernel too
    checkClean(img);
  }, 120_000);

  it('an image with a tree log is refused (the log is the kernel\'s to replay first)', () => {
    const img = makeTreeLogImage(dir);
    if (typeof img !== 'string') return console.warn(`subvolume-snapshot tree log: skipping: ${img.skipped}`);
    const hash = sha(img);
    for (const args of [['subvolume', 'snapshot', img, 'sv', 'x'], ['subvolume', 'create', img, 'x'], ['subvolume', 'set-default', img, '0'], ['property', 'set', img, 'sv', 'ro', 'true']]) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toMatch(/has a tree log: mount it \(or receive into it\) once to replay it first \[IMAGE_HAS_LOG\]/);
      expect(sha(img)).toBe(hash);
    }
  }, 120_000);
});
