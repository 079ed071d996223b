import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as C from '../src/stream/constants.js';
import { CLI } from './helpers/image-harness.js';
import { b, encodeAll } from './helpers/craft.js';
import { btrfsCheck, checkProblems, manifestOf, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * An incremental receive into a kernel-made image whose parent snapshot holds files without data
 * checksums (`chattr +C`: NODATACOW|NODATASUM). The snapshot the receive makes has them too, and what it
 * writes into them must get no csum items, as the kernel writes none (btrfs check: "odd csum item"
 * otherwise), nor compression with --compress (the kernel never compresses such files); a clone between
 * such a file and one with checksums is copied (the kernel's clone refuses it). Oracle: btrfs check with
 * data checksums, the kernel's mount (scrub, the tree as the kernel's own snapshot has it).
 */

const why = skipReason('mount');
if (why) console.warn(`receive-nodatasum: skipping: ${why}`);

let dir = '';
let image = '';
let stream = '';
let expected: string[] = [];
let parentUuid = '';
const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

describe.skipIf(why)('receive into files without data checksums', () => {
  beforeAll(async () => {
    dir = tmpDir('btrfs-ts-nodatasum-');
    image = join(dir, 'kernel.img');
    stream = join(dir, 'B.stream');
    execFileSync('truncate', ['-s', '512M', image]);
    execFileSync('mkfs.btrfs', ['-q', image]);
    const m = mount(image);
    try {
      execFileSync('sh', ['-e', '-c', `
        btrfs -q subvolume create s
        touch s/nocow; chattr +C s/nocow; head -c 300000 /dev/urandom > s/nocow
        mkdir s/d; chattr +C s/d; head -c 200000 /dev/urandom > s/d/inherited
        head -c 300000 /dev/urandom > s/sums
        sync; btrfs -q subvolume snapshot -r s A
        dd if=/dev/urandom of=s/nocow bs=4096 count=10 seek=5 conv=notrunc status=none; head -c 70000 /dev/urandom >> s/nocow
        seq 1 40000 | dd of=s/d/inherited bs=4096 seek=2 conv=notrunc status=none
        head -c 5000 /dev/urandom >> s/sums
        sync; btrfs -q subvolume snapshot -r s B
        btrfs send -q -p A -f ${stream} B`], { cwd: m.dir, stdio: ['ignore', 'ignore', 'inherit'] });
      expected = await manifestOf(join(m.dir, 'B'));
      parentUuid = /^\s*UUID:\s+(\S+)$/m.exec(execFileSync('btrfs', ['subvolume', 'show', join(m.dir, 'A')], { encoding: 'utf8' }))![1]!;
      // (the test is about these flags: the kernel set them)
      expect(execFileSync('lsattr', [join(m.dir, 'A', 'nocow'), join(m.dir, 'A', 'd', 'inherited')], { encoding: 'utf8' })).toMatch(/C.* .*nocow\n.*C.* .*inherited\n/);
    } finally {
      m.umount();
    }
  }, 120_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** btrfs check (data checksums too) clean; the kernel mounts it, scrubs it clean and reads `path` as `want`. */
  async function kernelAccepts(img: string, path: string, want: string[]): Promise<void> {
    const c = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
    expect(c.status, `${c.stdout}\n${c.stderr}`).toBe(0);
    expect(checkProblems(`${c.stdout}\n${c.stderr}`)).toEqual([]);
    expect(checkProblems(btrfsCheck(img).output)).toEqual([]);
    const m = mount(img);
    try {
      expect(execFileSync('btrfs', ['scrub', 'start', '-B', m.dir], { encoding: 'utf8', timeout: 120_000 })).toMatch(/no errors found/);
      expect(await manifestOf(join(m.dir, path))).toEqual(want);
    } finally {
      m.umount();
    }
  }

  for (const opts of [[], ['--compress', 'zstd']]) {
    it(`the kernel's incremental, its parent's NODATASUM files written${opts.length ? ' (--compress zstd)' : ''}: no csum items, no compression`, async () => {
      const img = join(dir, `recv${opts.length}.img`);
      copyFileSync(image, img);
      const r = cli(['receive', '-q', ...opts, '--dest', '/s', '-f', stream, img]);
      expect(r.status, r.stderr).toBe(0);
      await kernelAccepts(img, 's/B', expected);
      // no compressed extent in the NODATACOW files' trees either (dump-tree: the received subvolume is the last)
      const id = /ID (\d+) .*path s\/B$/m.exec(cli(['subvolume', 'list', img]).stdout)![1]!;
      const tree = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', id, img], { encoding: 'utf8', maxBuffer: 64 << 20 });
      const nocowIno = /item \d+ key \((\d+) INODE_REF \d+\) itemoff \d+ itemsize \d+\n\s+index \d+ namelen 5 name: nocow/.exec(tree)![1]!;
      const nocowExtents = tree.split(/\n\titem /).filter((i) => i.includes(`key (${nocowIno} EXTENT_DATA`));
      expect(nocowExtents.length).toBeGreaterThan(0);
      for (const e of nocowExtents) expect(e).not.toMatch(/compression [1-9]/);
    });
  }

  it('new files take the top directory\'s NODATACOW as the kernel\'s receive gives it them (btrfs_inherit_iflags)', () => {
    // a subvolume whose top directory is `chattr +C`: the stream creates its new inodes there (orphan names)
    const img = join(dir, 'topnocow.img');
    const incr = join(dir, 'topnocow.stream');
    execFileSync('truncate', ['-s', '512M', img]);
    execFileSync('mkfs.btrfs', ['-q', img]);
    const m = mount(img);
    try {
      execFileSync('sh', ['-e', '-c', `
        btrfs -q subvolume create v; chattr +C v; head -c 100000 /dev/urandom > v/old; mkdir v/d
        btrfs -q subvolume snapshot -r v s1
        head -c 200000 /dev/urandom > v/new1; head -c 3000 /dev/urandom > v/d/new2; mkdir v/d/sub; ln -s x v/sym
        btrfs -q subvolume snapshot -r v s2; btrfs send -q -p s1 -f ${incr} s2; btrfs -q subvolume delete s2`], { cwd: m.dir, stdio: ['ignore', 'ignore', 'inherit'] });
    } finally {
      m.umount();
    }
    // the inode flags of the received subvolume, in inode order
    const flagsOf = (image: string): string[] => {
      const id = /ID (\d+) .*path s2$/m.exec(cli(['subvolume', 'list', image]).stdout)![1]!;
      const tree = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', id, image], { encoding: 'utf8' });
      return [...tree.matchAll(/item \d+ key \((\d+) INODE_ITEM 0\) itemoff \d+ itemsize \d+\n[^\n]*\n[^\n]*\n\s*sequence \d+ flags (0x[0-9a-f]+)/g)].map((x) => `${x[1]} ${x[2]}`);
    };
    const kernel = join(dir, 'topnocow-kernel.img');
    copyFileSync(img, kernel);
    const km = mount(kernel);
    try {
      execFileSync('btrfs', ['receive', '-q', '-f', incr, km.dir]);
    } finally {
      km.umount();
    }
    const r = cli(['receive', '-q', '-f', incr, img]);
    expect(r.status, r.stderr).toBe(0);
    const want = flagsOf(kernel);
    // new1, new2 NODATASUM|NODATACOW; sub and sym NODATACOW
    expect(want.filter((f) => f.endsWith(' 0x3')).length).toBeGreaterThanOrEqual(2);
    expect(flagsOf(img)).toEqual(want);
    const c = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
    expect(c.status, `${c.stdout}\n${c.stderr}`).toBe(0);
    expect(checkProblems(`${c.stdout}\n${c.stderr}`)).toEqual([]);
  });

  it('a clone between a file with data checksums and one without is copied, not shared', async () => {
    // an incremental on A: the NODATASUM file gets a range of the checksummed one, and the reverse
    const u = Uint8Array.from(parentUuid.replace(/-/g, '').match(/../g)!.map((h) => parseInt(h, 16)));
    const own = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
    const ctransid = BigInt(/Generation:\s+(\d+)/.exec(cli(['subvolume', 'show', image, 'A']).stdout)![1]!);
    const crafted = join(dir, 'clones.stream');
    writeFileSync(crafted, encodeAll(1, [
      { cmd: C.BTRFS_SEND_C_SNAPSHOT, path: b('X'), uuid: own, ctransid: ctransid + 1n, cloneUuid: u, cloneCtransid: ctransid },
      { cmd: C.BTRFS_SEND_C_CLONE, path: b('nocow'), fileOffset: 0n, cloneLen: 65536n, cloneUuid: u, cloneCtransid: ctransid, clonePath: b('sums'), cloneOffset: 65536n },
      { cmd: C.BTRFS_SEND_C_CLONE, path: b('sums'), fileOffset: 131072n, cloneLen: 65536n, cloneUuid: u, cloneCtransid: ctransid, clonePath: b('nocow'), cloneOffset: 196608n },
      { cmd: C.BTRFS_SEND_C_END },
    ]));
    const img = join(dir, 'clones.img');
    copyFileSync(image, img);
    const r = cli(['receive', '-q', '--dest', '/s', '-f', crafted, img]);
    expect(r.status, r.stderr).toBe(0);
    // what the clones make of A's files, read back through the kernel
    const m = mount(image, 'ro');
    let want: Buffer[];
    try {
      const nocow = execFileSync('cat', [join(m.dir, 'A', 'nocow')]);
      const sums = execFileSync('cat', [join(m.dir, 'A', 'sums')]);
      const n2 = Buffer.concat([sums.subarray(65536, 131072), nocow.subarray(65536)]);
      const s2 = Buffer.concat([sums.subarray(0, 131072), nocow.subarray(196608, 262144), sums.subarray(196608)]);
      want = [n2, s2];
    } finally {
      m.umount();
    }
    const c = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
    expect(c.status, `${c.stdout}\n${c.stderr}`).toBe(0);
    expect(checkProblems(`${c.stdout}\n${c.stderr}`)).toEqual([]);
    const m2 = mount(img, 'ro');
    try {
      expect(execFileSync('cat', [join(m2.dir, 's', 'X', 'nocow')]).equals(want[0]!)).toBe(true);
      expect(execFileSync('cat', [join(m2.dir, 's', 'X', 'sums')]).equals(want[1]!)).toBe(true);
    } finally {
      m2.umount();
    }
  });
});
