import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { BtrfsImage } from '../src/image/read/index.js';
import { withImageFile } from '../src/io/image-read-file.js';
import { detectSignature } from '../src/io/fs-signature.js';
import { btrfsCheck, checkProblems, manifestOf, mount, skipReason, tmpDir } from './image-write-helpers.js';

/** mkfs options beyond the basics: -f and foreign filesystems, -U/--device-uuid, reproducible images. */
const why = skipReason('progs');
if (why) console.warn(`SKIP mkfs-options.test: ${why}`);
const work = tmpDir('btrfs-ts-mkfsopt-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Runs the CLI in-process; stderr is captured. */
async function mkfs(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; err: string }> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  const errs: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
  try {
    return { code: await main(['node', 'btrfs-ts', 'mkfs', '-q', ...args]), err: errs.join('') };
  } finally {
    process.stderr.write = orig;
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
}
const digest = (f: string): string => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
function expectClean(img: string): void {
  const chk = btrfsCheck(img);
  expect(chk.status, chk.output).toBe(0);
  expect(checkProblems(chk.output), chk.output).toEqual([]);
}
const have = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

describe('filesystem signatures', () => {
  it('nothing is recognised in zeros or random bytes without a magic', () => {
    expect(detectSignature(new Uint8Array(70000))).toBeUndefined();
    expect(detectSignature(new Uint8Array(100))).toBeUndefined();
  });
});

describe.skipIf(!!why)('mkfs -f: an existing filesystem is overwritten only when forced', () => {
  const makers: [name: string, tool: string, args: (f: string) => string[], shown: RegExp][] = [
    ['btrfs', 'mkfs.btrfs', (f) => ['-q', '-f', f], /a btrfs filesystem/],
    ['ext4', 'mkfs.ext4', (f) => ['-q', '-F', f], /an? ext2\/ext3\/ext4 signature/],
    ['xfs', 'mkfs.xfs', (f) => ['-q', '-f', f], /a xfs signature/],
    ['swap', 'mkswap', (f) => [f], /a swap signature/],
  ];
  for (const [name, tool, args, shown] of makers) {
    it.skipIf(!have(tool))(`${name} (made by ${tool}): refused and left byte-for-byte unchanged without -f; replaced with -f`, async () => {
      const img = path.join(work, `${name}.img`);
      fs.writeFileSync(img, '');
      fs.truncateSync(img, 320 << 20);
      execFileSync(tool, args(img), { stdio: 'ignore' });
      const before = digest(img);
      const r = await mkfs([img]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(shown);
      expect(r.err).toMatch(/use -f to overwrite/);
      expect(digest(img)).toBe(before);
      expect((await mkfs(['-f', img])).code).toBe(0);
      expectClean(img);
    }, 300_000);
  }
});

describe.skipIf(!!why)('mkfs -U / --device-uuid', () => {
  it('sets the filesystem and device uuids; a malformed uuid is a usage error that writes nothing', async () => {
    const img = path.join(work, 'uuid.img');
    const fsid = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0', dev = '11112222-3333-4444-8555-666677778888';
    expect((await mkfs(['-U', fsid, '--device-uuid', dev, img])).code).toBe(0);
    const sup = execFileSync('btrfs', ['inspect-internal', 'dump-super', img], { encoding: 'utf8' });
    expect(sup).toMatch(new RegExp(`^fsid\\s+${fsid}$`, 'm'));
    expect(sup).toMatch(new RegExp(`^dev_item.uuid\\s+${dev}$`, 'm'));
    expectClean(img);
    const bad = path.join(work, 'bad-uuid.img');
    const r = await mkfs(['-U', 'not-a-uuid', bad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/-U\/--uuid: "not-a-uuid" is not a uuid/);
    expect(fs.existsSync(bad)).toBe(false);
  });
});

describe.skipIf(!!why)('reproducible images (SOURCE_DATE_EPOCH)', () => {
  const EPOCH = 1_700_000_000;
  const a = path.join(work, 'tree-a');
  fs.mkdirSync(path.join(a, 'd', 'e'), { recursive: true });
  fs.writeFileSync(path.join(a, 'd', 'f'), Buffer.alloc(300_000, 7));
  fs.writeFileSync(path.join(a, 'd', 'e', 'g'), 'small\n');
  fs.symlinkSync('d/f', path.join(a, 'l'));
  fs.linkSync(path.join(a, 'd', 'f'), path.join(a, 'hard'));
  execFileSync('mkfifo', [path.join(a, 'fifo')]);
  // old times on everything but one file, whose mtime is later than the epoch (clamped)
  execFileSync('sh', ['-c', `find "${a}" -exec touch -h -d @1600000000 {} + && touch -d @1800000000 "${a}/d/e/g"`]);

  it('the same tree copied elsewhere later gives a byte-identical image; times after the epoch are clamped', async () => {
    // the copy keeps mtimes, but its ctimes, atimes and birth times are new: only the clamp makes them equal
    const b = path.join(work, 'elsewhere', 'tree-b');
    fs.mkdirSync(path.dirname(b));
    await new Promise((r) => setTimeout(r, 1100));
    execFileSync('cp', ['-a', a, b]);
    const img1 = path.join(work, 'r1.img'), img2 = path.join(work, 'elsewhere', 'r2.img');
    const env = { SOURCE_DATE_EPOCH: String(EPOCH) };
    expect((await mkfs(['-r', a, img1], env)).code).toBe(0);
    expect((await mkfs(['-r', b, '-f', img2], env)).code).toBe(0);
    expect(digest(img1)).toBe(digest(img2));
    expectClean(img1);
    await withImageFile(img1, async (src) => {
      const img = await BtrfsImage.open(src);
      const g = await img.stat(await img.resolve('d/e/g'));
      expect([g.mtime.sec, g.ctime.sec, g.atime.sec]).toEqual([BigInt(EPOCH), BigInt(EPOCH), BigInt(EPOCH)]);
      const f = await img.stat(await img.resolve('d/f'));
      expect(f.mtime.sec).toBe(1_600_000_000n);
    });
    // a different epoch, or none, gives another image (uuids and times follow it)
    const img3 = path.join(work, 'r3.img'), img4 = path.join(work, 'r4.img');
    expect((await mkfs(['-r', a, img3], { SOURCE_DATE_EPOCH: String(EPOCH + 1) })).code).toBe(0);
    expect((await mkfs(['-r', a, img4], { SOURCE_DATE_EPOCH: undefined })).code).toBe(0);
    expect(digest(img3)).not.toBe(digest(img1));
    expect(digest(img4)).not.toBe(digest(img1));
  }, 300_000);

  it('a malformed SOURCE_DATE_EPOCH is a usage error', async () => {
    const r = await mkfs([path.join(work, 'bad-epoch.img')], { SOURCE_DATE_EPOCH: 'yesterday' });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/SOURCE_DATE_EPOCH="yesterday" is not a count of seconds/);
  });
});

describe.skipIf(!!why)('mkfs -O / -R features, -d, -M', () => {
  const root = path.join(work, 'feat-root');
  fs.mkdirSync(path.join(root, 'links'), { recursive: true });
  // a sparse file: hole, data, hole, data past 1 MiB, unaligned end
  const sparse = path.join(root, 'sparse');
  fs.writeFileSync(sparse, '');
  fs.truncateSync(sparse, 1 << 20);
  const fd = fs.openSync(sparse, 'r+');
  fs.writeSync(fd, Buffer.alloc(3000, 9), 0, 3000, 500_000);
  fs.writeSync(fd, Buffer.alloc(5000, 8), 0, 5000, 1 << 20);
  fs.closeSync(fd);
  // 70 names of 250 bytes for one inode in one directory: more than one INODE_REF item holds
  fs.writeFileSync(path.join(root, 'links', 'target'), 'linked\n');
  for (let i = 0; i < 70; i++) fs.linkSync(path.join(root, 'links', 'target'), path.join(root, 'links', `${String(i).padStart(3, '0')}${'n'.repeat(247)}`));

  /** btrfs check --check-data-csum: exit 0, no problem. */
  const expectCsumClean = (img: string): void => {
    const r = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(checkProblems(r.stdout + r.stderr)).toEqual([]);
  };
  /** The kernel shows `tree`'s manifest, then `use` writes to the mount; check is clean after (or why it skips). */
  const kernelRoundTrip = async (what: string, img: string, tree: string, use: (dir: string) => void): Promise<void> => {
    const cantMount = skipReason('mount');
    if (cantMount) return void console.warn(`SKIP the kernel part of ${what}: ${cantMount}`);
    const m = mount(img);
    try {
      expect(await manifestOf(m.dir)).toEqual(await manifestOf(tree));
      use(m.dir);
    } finally {
      m.umount();
    }
    expectClean(img);
  };

  const incompat = (img: string): string => execFileSync('btrfs', ['inspect-internal', 'dump-super', img], { encoding: 'utf8' }).split(/^incompat_flags/m)[1]!.split(/^\S/m)[0]!;

  it('^no-holes: explicit hole extents cover every gap up to the sector-rounded size; check --check-data-csum clean', async () => {
    const img = path.join(work, 'noholes.img');
    expect((await mkfs(['-O', '^no-holes', '-r', root, img])).code).toBe(0);
    expect(incompat(img)).not.toMatch(/NO_HOLES/);
    expect(incompat(img)).toMatch(/EXTENDED_IREF/);
    const r = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const tree = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', '5', img], { encoding: 'utf8' });
    // the sparse file: hole [0, 499712), data, hole up to 1 MiB, data to the end
    const hole = (at: number, len: number): RegExp => new RegExp(`EXTENT_DATA ${at}\\)[^\\n]*\\n[^\\n]*\\n[^\\n]*disk byte 0 nr 0\\n[^\\n]*offset 0 nr ${len} ram ${len}\\n`);
    expect(tree).toMatch(hole(0, 499712));
    expect(tree).toMatch(hole(503808, 544768));
    await withImageFile(img, async (src) => {
      const bi = await BtrfsImage.open(src);
      const parts: Uint8Array[] = [];
      for await (const c of bi.readFile(await bi.resolve('sparse'))) parts.push(c);
      expect(Buffer.compare(Buffer.concat(parts), fs.readFileSync(sparse))).toBe(0);
    });
  }, 300_000);

  it('^extref: a name that needs an extended ref is refused and no image is left; with extref (default) it is stored', async () => {
    const img = path.join(work, 'noextref.img');
    const r = await mkfs(['-O', '^extref', '-r', root, img]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Too many links: inode \d+ has no room for another name in directory \d+ \(the image lacks the extref feature\)/);
    expect(fs.existsSync(img)).toBe(false);
    const ok = path.join(work, 'extref.img');
    expect((await mkfs(['-r', root, ok])).code).toBe(0);
    expectClean(ok);
    expect(execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', '5', ok], { encoding: 'utf8' })).toMatch(/INODE_EXTREF/);
  }, 300_000);

  it('-R ^free-space-tree: no free space tree, cache_generation -1 as mkfs.btrfs; check clean; the kernel reads it and writes with space cache v1', async () => {
    const img = path.join(work, 'nofst.img');
    expect((await mkfs(['-R', '^free-space-tree', '-r', root, img])).code).toBe(0);
    const sb = execFileSync('btrfs', ['inspect-internal', 'dump-super', img], { encoding: 'utf8' });
    expect(sb).toMatch(/^compat_ro_flags\s+0x0$/m);
    expect(sb).toMatch(/^cache_generation\s+18446744073709551615$/m);
    expect(execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'root', img], { encoding: 'utf8' })).not.toMatch(/FREE_SPACE_TREE ROOT_ITEM/);
    const r = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(checkProblems(r.stdout + r.stderr)).toEqual([]);
    const cantMount = skipReason('mount');
    if (cantMount) return void console.warn(`SKIP the kernel part of -R ^free-space-tree: ${cantMount}`);
    const m = mount(img);
    try {
      expect(fs.readFileSync(path.join(m.dir, 'sparse')).equals(fs.readFileSync(sparse))).toBe(true);
      fs.writeFileSync(path.join(m.dir, 'kernel-file'), Buffer.alloc(1 << 20, 3));
    } finally {
      m.umount();
    }
    expectClean(img);
    // the kernel used space cache v1 (it did not add a free space tree)
    expect(execFileSync('btrfs', ['inspect-internal', 'dump-super', img], { encoding: 'utf8' })).toMatch(/^compat_ro_flags\s+0x0$/m);
  }, 300_000);

  it('-M: one SYSTEM chunk and DATA|METADATA ones (a second when the first fills), nodesize = sectorsize; check --check-data-csum clean; the kernel reads the tree, writes, check clean', async () => {
    const mixedRoot = path.join(work, 'mixed-root');
    fs.cpSync(root, mixedRoot, { recursive: true });
    // 12 MiB of data: more than the first 8 MiB mixed chunk holds
    fs.writeFileSync(path.join(mixedRoot, 'big'), Buffer.concat(Array.from({ length: 12 }, (_, i) => Buffer.alloc(1 << 20, i))));
    const img = path.join(work, 'mixed.img');
    expect((await mkfs(['-M', '-r', mixedRoot, img])).code).toBe(0);
    expect(incompat(img)).toMatch(/MIXED_GROUPS/);
    expect(execFileSync('btrfs', ['inspect-internal', 'dump-super', img], { encoding: 'utf8' })).toMatch(/^nodesize\s+4096$/m);
    const types = [...execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'chunk', img], { encoding: 'utf8' }).matchAll(/stripe_len \d+ type (\S+)/g)].map((m) => m[1]);
    expect(types[0]).toBe('SYSTEM|single');
    expect(types.length).toBeGreaterThanOrEqual(3);
    for (const t of types.slice(1)) expect(t).toBe('DATA|METADATA|single');
    expectCsumClean(img);
    await kernelRoundTrip('-M', img, mixedRoot, (dir) => {
      fs.writeFileSync(path.join(dir, 'kernel-file'), Buffer.alloc(3 << 20, 3));
      fs.rmSync(path.join(dir, 'big'));
    });
  }, 300_000);

  it('-d dup: every DATA chunk DUP (a second when the first fills), check --check-data-csum clean; the kernel scrubs both copies clean, reads the tree, writes, check clean', async () => {
    const dupRoot = path.join(work, 'dup-root');
    fs.cpSync(root, dupRoot, { recursive: true });
    // random data (nothing for compression or sharing to hide), more than the first 8 MiB DUP data chunk holds
    fs.writeFileSync(path.join(dupRoot, 'big'), randomBytes(12 << 20));
    const img = path.join(work, 'dup.img');
    expect((await mkfs(['-d', 'dup', '-r', dupRoot, img])).code).toBe(0);
    const types = [...execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'chunk', img], { encoding: 'utf8' }).matchAll(/stripe_len \d+ type (\S+)/g)].map((m) => m[1]);
    const dataTypes = types.filter((t) => t!.startsWith('DATA'));
    expect(dataTypes.length).toBeGreaterThanOrEqual(2);
    for (const t of dataTypes) expect(t).toBe('DATA|DUP');
    expectCsumClean(img);
    await kernelRoundTrip('-d dup', img, dupRoot, (dir) => {
      const scrub = spawnSync('btrfs', ['scrub', 'start', '-B', dir], { encoding: 'utf8' });
      expect(scrub.status, scrub.stdout + scrub.stderr).toBe(0);
      expect(scrub.stdout).toMatch(/no errors found/);
      // scrub reads both copies of each data extent: 12 MiB and more of data counts twice
      fs.writeFileSync(path.join(dir, 'kernel-file'), Buffer.alloc(3 << 20, 3));
    });
  }, 300_000);

  it('-O ^skinny-metadata: tree block extents are EXTENT_ITEMs with a tree_block_info, no METADATA_ITEM; check clean; the kernel reads the tree, writes, check clean', async () => {
    const img = path.join(work, 'noskinny.img');
    expect((await mkfs(['-O', '^skinny-metadata', '-r', root, img])).code).toBe(0);
    expect(incompat(img)).not.toMatch(/SKINNY_METADATA/);
    const extent = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'extent', img], { encoding: 'utf8' });
    expect(extent).not.toMatch(/METADATA_ITEM/);
    expect(extent).toMatch(/EXTENT_ITEM 16384\) itemoff \d+ itemsize 51\n\s+refs 1 gen \d+ flags TREE_BLOCK\n\s+tree block key \(0 UNKNOWN.0 0\) level 0\n\s+tree block backref root FS_TREE/);
    expectCsumClean(img);
    await kernelRoundTrip('-O ^skinny-metadata', img, root, (dir) => {
      execFileSync('btrfs', ['subvolume', 'snapshot', dir, path.join(dir, 'snap')]);
      fs.writeFileSync(path.join(dir, 'kernel-file'), Buffer.alloc(1 << 20, 3));
    });
  }, 300_000);

  it('-R quota: a quota tree with every subvolume counted (check verifies the counts); the kernel shows the same numbers before and after a rescan; receive then marks them for a rescan', async () => {
    const img = path.join(work, 'quota.img');
    // a subvolume besides the top level, compressed data
    const quotaRoot = path.join(work, 'quota-root');
    fs.cpSync(root, path.join(quotaRoot, 'a'), { recursive: true });
    fs.mkdirSync(path.join(quotaRoot, 'b'));
    for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(quotaRoot, 'b', `f${i}`), Buffer.alloc(10_000 + i * 999, i));
    expect((await mkfs(['-R', 'quota', '-r', quotaRoot, '--subvol', 'b', '--compress', 'zstd', img])).code).toBe(0);
    const quota = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'quota', img], { encoding: 'utf8' });
    expect(quota).toMatch(/QGROUP_STATUS 0\)[^\n]*\n\s+version 1 generation \d+ flags ON scan 0/);
    const counted = [...quota.matchAll(/QGROUP_INFO 0\/(\d+)\)[^\n]*\n[^\n]*\n\s+referenced (\d+)[^\n]*\n\s+exclusive (\d+)/g)].map((m) => `0/${m[1]} ${m[2]} ${m[3]}`);
    expect(counted.map((c) => c.split(' ')[0])).toEqual(['0/5', '0/256']);
    const chk = spawnSync('btrfs', ['check', '--readonly', img], { encoding: 'utf8' });
    expect(chk.stdout + chk.stderr).toMatch(/checking quota groups\n/);
    expect(chk.stdout + chk.stderr).not.toMatch(/skipped|Rescan hasn't|are different/);
    expect(chk.status, chk.stdout + chk.stderr).toBe(0);
    expect(checkProblems(chk.stdout + chk.stderr)).toEqual([]);
    const cantMount = skipReason('mount');
    if (cantMount) return void console.warn(`SKIP the kernel part of -R quota: ${cantMount}`);
    const m = mount(img);
    const show = (): string[] => execFileSync('btrfs', ['qgroup', 'show', '--raw', m.dir], { encoding: 'utf8' }).split('\n')
      .filter((l) => /^0\//.test(l)).map((l) => l.trim().split(/\s+/).slice(0, 3).join(' '));
    try {
      expect(show()).toEqual(counted);
      execFileSync('btrfs', ['quota', 'rescan', '-w', m.dir]);
      expect(show()).toEqual(counted);
      fs.writeFileSync(path.join(m.dir, 'kernel-file'), Buffer.alloc(1 << 20, 3));
    } finally {
      m.umount();
    }
    expectClean(img);
    const r = spawnSync('node', [path.join(__dirname, '..', 'bin', 'btrfs-ts.js'), 'receive', '-q', '-f', path.join(__dirname, '..', 'streams', 'sample.stream'), img], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const after = btrfsCheck(img);
    expect(after.output).toMatch(/Rescan hasn't been initial/);
    expect(checkProblems(after.output)).toEqual([]);
  }, 300_000);

  it('-O block-group-tree: block group items in tree 11, none in the extent tree; check clean; the kernel adds chunks there; btrfs-ts receives again', async () => {
    const img = path.join(work, 'bgt.img');
    const bgtRoot = path.join(work, 'bgt-root');
    fs.cpSync(root, bgtRoot, { recursive: true });
    // 12 MiB: past the first 8 MiB data chunk, so btrfs-ts adds one (its item in the block group tree)
    fs.writeFileSync(path.join(bgtRoot, 'big'), Buffer.concat(Array.from({ length: 12 }, (_, i) => Buffer.alloc(1 << 20, i))));
    expect((await mkfs(['-O', 'block-group-tree', '-r', bgtRoot, '-b', '256M', img])).code).toBe(0);
    const sb = execFileSync('btrfs', ['inspect-internal', 'dump-super', img], { encoding: 'utf8' });
    expect(sb).toMatch(/^compat_ro_flags\s+0xb$/m); // FREE_SPACE_TREE | _VALID | BLOCK_GROUP_TREE
    const items = (tree: string): number => execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', tree, img], { encoding: 'utf8' }).split('BLOCK_GROUP_ITEM').length - 1;
    expect(items('extent')).toBe(0);
    const made = items('11');
    expect(made).toBeGreaterThanOrEqual(4);
    expectCsumClean(img);
    if (skipReason('mount')) return void console.warn(`SKIP the kernel part of -O block-group-tree: ${skipReason('mount')}`);
    await kernelRoundTrip('-O block-group-tree', img, bgtRoot, (dir) => fs.writeFileSync(path.join(dir, 'kernel-file'), Buffer.alloc(40 << 20, 3)));
    expect(items('11')).toBeGreaterThan(made);
    expect(items('extent')).toBe(0);
    const recv = spawnSync('node', [path.join(__dirname, '..', 'bin', 'btrfs-ts.js'), 'receive', '-q', '-f', path.join(__dirname, '..', 'streams', 'full-v1.stream'), img], { encoding: 'utf8' });
    expect(recv.stderr).toBe('');
    expect(recv.status).toBe(0);
    expectClean(img);
  }, 300_000);

  it('what cannot be made is refused before anything is written; list-all lists every feature', async () => {
    const img = path.join(work, 'refused.img');
    // refused (1) for what cannot be made; usage (2) for what is not a feature at all
    const cases: [string[], RegExp, number][] = [
      [['-O', 'squota'], /-O squota: simple quotas are not supported/, 1],
      [['-O', 'block-group-tree', '-R', '^free-space-tree'], /-O block-group-tree needs free-space-tree and no-holes/, 2],
      [['-O', 'no-holes,zoned'], /-O zoned: zoned devices are not supported/, 1],
      [['-O', 'bogus'], /-O: unknown feature "bogus"/, 2],
      [['-d', 'raid1'], /-d raid1: needs several devices/, 1],
      [['-M', '-n', '16384'], /-M: nodesize 16384 and sectorsize 4096 must be equal/, 2],
      [['-M', '-m', 'dup'], /-M: metadata profile dup and data profile single must be the same/, 2],
      [['-O', 'mixed-bg', '-n', '8192'], /-M: nodesize 8192 and sectorsize 4096 must be equal/, 2],
    ];
    for (const [args, msg, status] of cases) {
      const r = await mkfs([...args, img]);
      expect(r.code, args.join(' ')).toBe(status);
      expect(r.err).toMatch(msg);
      expect(fs.existsSync(img)).toBe(false);
    }
    const out: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
    try {
      expect((await mkfs(['-O', 'list-all', img])).code).toBe(0);
    } finally {
      process.stdout.write = orig;
    }
    expect(out.join('')).toMatch(/^no-holes\s+\(default\) on or off$/m);
    expect(out.join('')).toMatch(/^squota\s+refused/m);
    expect(fs.existsSync(img)).toBe(false);
  });
});

describe.skipIf(!!skipReason('mount'))('mkfs --subvol', () => {
  it('rootdir subdirectories become subvolumes (nested, read-only, default); the kernel shows the tree', async () => {
    const root = path.join(work, 'subvol-root');
    for (const d of ['a/b/c', 'ro', 'def', 'plain']) fs.mkdirSync(path.join(root, d), { recursive: true });
    for (const [f, v] of [['a/f1', '1'], ['a/b/f2', '2'], ['a/b/c/f3', '3'], ['ro/f4', '4'], ['def/f5', '5'], ['plain/f6', '6']]) fs.writeFileSync(path.join(root, f!), v!);
    // one inode named inside and outside subvolume a: two files in the image
    fs.linkSync(path.join(root, 'a', 'f1'), path.join(root, 'plain', 'hl'));
    const img = path.join(work, 'subvol.img');
    expect((await mkfs(['-r', root, '--subvol', 'a', '--subvol', 'a/b/c/', '--subvol', 'ro:ro', '--subvol', 'default:./def', img])).code).toBe(0);
    expectClean(img);
    const mnt = path.join(work, 'subvol-mnt');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-o', 'loop,ro', img, mnt]);
    try {
      expect(fs.readdirSync(mnt)).toEqual(['f5']); // the default subvolume
    } finally {
      execFileSync('umount', [mnt]);
    }
    execFileSync('mount', ['-o', 'loop,ro,subvolid=5', img, mnt]);
    try {
      const list = execFileSync('btrfs', ['subvolume', 'list', mnt], { encoding: 'utf8' });
      expect(list.trim().split('\n').map((l) => l.replace(/^ID (\d+) gen \d+ top level (\d+) path /, '$1 $2 '))).toEqual(['256 5 a', '257 256 a/b/c', '258 5 def', '259 5 ro']);
      expect(execFileSync('btrfs', ['subvolume', 'show', path.join(mnt, 'ro')], { encoding: 'utf8' })).toMatch(/Flags:\s+readonly/);
      expect(execFileSync('btrfs', ['subvolume', 'show', path.join(mnt, 'a')], { encoding: 'utf8' })).toMatch(/Flags:\s+-/);
      expect(execFileSync('btrfs', ['subvolume', 'get-default', mnt], { encoding: 'utf8' })).toMatch(/^ID 258 .* path def$/m);
      expect(spawnSync('diff', ['-r', root, mnt]).status).toBe(0);
    } finally {
      execFileSync('umount', [mnt]);
    }
  }, 300_000);

  it('a --subvol that is not a directory of the rootdir is refused before anything is written', async () => {
    const root = path.join(work, 'subvol-root');
    const img = path.join(work, 'subvol-bad.img');
    for (const [spec, msg] of [['nope', /is not a directory/], ['a/f1', /is not a directory/], ['../x', /not a directory inside --rootdir/], ['ro:a', /given twice/], ['default:ro', /only one default/]] as const) {
      const args = spec === 'ro:a' ? ['--subvol', 'a', '--subvol', spec] : spec === 'default:ro' ? ['--subvol', 'default:a', '--subvol', spec] : ['--subvol', spec];
      const r = await mkfs(['-r', root, ...args, img]);
      expect(r.code, spec).toBe(2);
      expect(r.err).toMatch(msg);
      expect(fs.existsSync(img)).toBe(false);
    }
    expect((await mkfs(['--subvol', 'a', img])).err).toMatch(/--subvol needs --rootdir/);
  });
});

describe.skipIf(!!why)('mkfs -D device table (unprivileged builds of root-owned trees)', () => {
  it('owners and permissions come from the table; missing directories and device nodes are made; errors name the line', async () => {
    const root = path.join(work, 'devtab-root');
    fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    execFileSync('chown', ['-R', '1000:1000', root]);
    fs.chmodSync(path.join(root, 'etc', 'passwd'), 0o600);
    const table = path.join(work, 'devtab');
    fs.writeFileSync(table, [
      '# path type mode uid gid major minor start inc count',
      '/ d 755 0 0 - - - - -',
      '/etc/passwd f 644 0 0 - - - - -',
      '/dev d 755 0 0 - - - - -',
      '/dev/console c 600 0 5 5 1 - - -',
      '/dev/tty c 620 0 5 4 0 0 1 3',
      '/dev/sda b 660 0 6 8 0 - - -',
      '/dev/initctl p 600 0 0 - - - - -',
      '',
    ].join('\n'));
    const img = path.join(work, 'devtab.img');
    expect((await mkfs(['-D', table, '-r', root, img])).code).toBe(0);
    expectClean(img);
    await withImageFile(img, async (src) => {
      const bi = await BtrfsImage.open(src);
      const st = async (p: string) => bi.stat(p === '' ? { root: 5n, ino: 256n } : await bi.resolve(p));
      const show = async (p: string): Promise<string> => {
        const s = await st(p);
        return `${s.mode.toString(8)} ${s.uid}:${s.gid} ${s.rdev >> 20n},${s.rdev & 0xfffffn}`;
      };
      expect(await show('')).toBe('40755 0:0 0,0');
      expect(await show('etc')).toBe('40755 1000:1000 0,0'); // not in the table: as in the tree
      expect(await show('etc/passwd')).toBe('100644 0:0 0,0');
      expect(await show('dev')).toBe('40755 0:0 0,0');
      expect(await show('dev/console')).toBe('20600 0:5 5,1');
      expect(await show('dev/tty0')).toBe('20620 0:5 4,0');
      expect(await show('dev/tty2')).toBe('20620 0:5 4,2');
      expect(await show('dev/sda')).toBe('60660 0:6 8,0');
      expect(await show('dev/initctl')).toBe('10600 0:0 0,0');
    });
    const bad: [string, RegExp][] = [
      ['/etc c 600 0 0 1 1 - - -', /"etc" is not of type c in the rootdir/],
      ['/nope/x c 600 0 0 1 1 - - -', /the directory holding "nope\/x" is not in the image/],
      ['/missing f 644 0 0 - - - - -', /regular file "missing" is not in the rootdir/],
      ['/dev/x c 600 0 0 1', /devtab2:1: expected 10 fields/],
      ['/dev/x z 600 0 0 - - - - -', /devtab2:1: type "z" is not one of/],
      ['/dev/x c 9999 0 0 - - - - -', /devtab2:1: mode "9999" is not a number/],
    ];
    for (const [line, msg] of bad) {
      fs.writeFileSync(path.join(work, 'devtab2'), `${line}\n`);
      const r = await mkfs(['-f', '-D', path.join(work, 'devtab2'), '-r', root, path.join(work, 'devtab-bad.img')]);
      expect(r.code, line).toBe(1);
      expect(r.err).toMatch(msg);
    }
  }, 300_000);
});

/** btrfs check --readonly --check-data-csum, clean. */
function expectCleanData(img: string): void {
  const r = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
  expect(r.status, r.stdout + r.stderr).toBe(0);
  expect(checkProblems(`${r.stdout}\n${r.stderr}`)).toEqual([]);
}

/** Largest end of a device extent, from btrfs-progs' own dump of the dev tree. */
function lastDevExtentEnd(img: string): bigint {
  const dump = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'dev', img], { encoding: 'utf8' });
  let end = 0n;
  for (const m of dump.matchAll(/key \(1 DEV_EXTENT (\d+)\)[^\n]*\n[^\n]*\n[^\n]*length (\d+)/g)) {
    const e = BigInt(m[1]!) + BigInt(m[2]!);
    if (e > end) end = e;
  }
  return end;
}

describe.skipIf(!!skipReason('mount'))('mkfs --shrink', () => {
  it('the image file ends where its last device extent ends; check clean with data checksums; the kernel reads the tree and writes to it', async () => {
    const root = path.join(work, 'shrink-root');
    fs.mkdirSync(path.join(root, 'd'), { recursive: true });
    fs.writeFileSync(path.join(root, 'd', 'big'), createHash('sha512').update('x').digest().toString('hex').repeat(40_000));
    fs.writeFileSync(path.join(root, 'small'), 'small\n');
    const img = path.join(work, 'shrink.img');
    const full = path.join(work, 'noshrink.img');
    expect((await mkfs(['-r', root, '--shrink', img])).code).toBe(0);
    expect((await mkfs(['-r', root, full])).code).toBe(0);
    const size = BigInt(fs.statSync(img).size);
    expect(size).toBe(lastDevExtentEnd(img));
    expect(size).toBeLessThan(BigInt(fs.statSync(full).size));
    const sup = execFileSync('btrfs', ['inspect-internal', 'dump-super', img], { encoding: 'utf8' });
    expect(sup).toMatch(new RegExp(`^total_bytes\\s+${size}$`, 'm'));
    expect(sup).toMatch(new RegExp(`^dev_item.total_bytes\\s+${size}$`, 'm'));
    expectCleanData(img);
    const m = mount(img);
    try {
      expect(spawnSync('diff', ['-r', root, m.dir]).status).toBe(0);
      fs.writeFileSync(path.join(m.dir, 'written-by-kernel'), 'k\n');
    } finally {
      m.umount();
    }
    expectCleanData(img);
  }, 300_000);

  it('--shrink needs --rootdir', async () => {
    const img = path.join(work, 'shrink-bad.img');
    const r = await mkfs(['--shrink', img]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--shrink needs --rootdir/);
    expect(fs.existsSync(img)).toBe(false);
  });
});

/** From btrfs-progs' dump of the fs tree: inode → flags, and inode → data extent ranges (bytenr, length). */
function fsTreeFacts(img: string): { flags: Map<bigint, bigint>; extents: Map<bigint, [bigint, bigint][]>; csums: [bigint, bigint][] } {
  const dump = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'fs', img], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const flags = new Map<bigint, bigint>();
  for (const m of dump.matchAll(/key \((\d+) INODE_ITEM 0\)[^\n]*\n(?:[^\n]*\n){2}[^\n]*flags (0x[0-9a-f]+)/g)) flags.set(BigInt(m[1]!), BigInt(m[2]!));
  const extents = new Map<bigint, [bigint, bigint][]>();
  for (const m of dump.matchAll(/key \((\d+) EXTENT_DATA \d+\)[^\n]*\n[^\n]*\n\s*extent data disk byte (\d+) nr (\d+)/g)) {
    if (m[2] === '0') continue;
    const list = extents.get(BigInt(m[1]!)) ?? [];
    list.push([BigInt(m[2]!), BigInt(m[3]!)]);
    extents.set(BigInt(m[1]!), list);
  }
  const cdump = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', 'csum', img], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const csums: [bigint, bigint][] = [];
  for (const m of cdump.matchAll(/key \(EXTENT_CSUM EXTENT_CSUM (\d+)\) itemoff \d+ itemsize (\d+)/g)) csums.push([BigInt(m[1]!), (BigInt(m[2]!) / 4n) * 4096n]);
  return { flags, extents, csums };
}

describe.skipIf(!!skipReason('mount'))('mkfs --inode-flags', () => {
  it('nodatacow/nodatasum per path, nodatacow inherited by what a directory holds (not nodatasum, not by a subvolume); such files get no checksums and no compression; check --check-data-csum clean; the kernel shows the C attribute', async () => {
    const root = path.join(work, 'iflags-root');
    for (const d of ['db/sub', 'sums', 'sv']) fs.mkdirSync(path.join(root, d), { recursive: true });
    const data = Buffer.alloc(200_000, 'compressible text ');
    for (const f of ['db/table', 'db/sub/x', 'sums/f', 'f-nosum', 'plain', 'sv/inner']) fs.writeFileSync(path.join(root, f), data);
    const img = path.join(work, 'iflags.img');
    const r = await mkfs(['-r', root, '--compress', 'zstd', '--subvol', 'sv', '--inode-flags', 'nodatacow:db', '--inode-flags', 'nodatasum:sums',
      '--inode-flags', 'nodatasum:f-nosum', '--inode-flags', 'nodatacow,nodatasum:sv', img]);
    expect(r.code, r.err).toBe(0);
    expectCleanData(img);
    const inos = await withImageFile(img, async (src) => {
      const bi = await BtrfsImage.open(src);
      const out = new Map<string, bigint>();
      for (const p of ['db', 'db/table', 'db/sub', 'db/sub/x', 'sums', 'sums/f', 'f-nosum', 'plain', 'sv/inner']) out.set(p, (await bi.resolve(p)).ino);
      return out;
    });
    const facts = fsTreeFacts(img);
    const flagOf = (p: string): bigint => facts.flags.get(inos.get(p)!)!;
    const NODATASUM = 1n, NODATACOW = 2n;
    expect(flagOf('db')).toBe(NODATACOW);
    expect(flagOf('db/table')).toBe(NODATACOW | NODATASUM);
    expect(flagOf('db/sub')).toBe(NODATACOW);
    expect(flagOf('db/sub/x')).toBe(NODATACOW | NODATASUM);
    expect(flagOf('sums')).toBe(NODATASUM);
    expect(flagOf('sums/f')).toBe(0n); // nodatasum alone is not inherited
    expect(flagOf('f-nosum')).toBe(NODATASUM);
    expect(flagOf('plain')).toBe(0n);
    const covered = (p: string): boolean => (facts.extents.get(inos.get(p)!) ?? []).some(([b, n]) => facts.csums.some(([s, l]) => b < s + l && s < b + n));
    const compressedSize = (p: string): bigint => (facts.extents.get(inos.get(p)!) ?? []).reduce((a, [, n]) => a + n, 0n);
    for (const p of ['db/table', 'db/sub/x', 'f-nosum']) {
      expect(covered(p), p).toBe(false);
      expect(compressedSize(p), p).toBeGreaterThanOrEqual(200_000n); // stored as is
    }
    expect(covered('plain')).toBe(true);
    expect(compressedSize('plain')).toBeLessThan(100_000n); // compressed
    const m = mount(img, 'ro');
    try {
      const attrs = (p: string): string => execFileSync('lsattr', ['-d', path.join(m.dir, p)], { encoding: 'utf8' }).split(' ')[0]!;
      for (const p of ['db', 'db/table', 'db/sub/x', 'sv', 'sv/inner']) expect(attrs(p), p).toContain('C');
      for (const p of ['plain', 'sums/f', 'f-nosum']) expect(attrs(p), p).not.toContain('C');
      expect(spawnSync('diff', ['-r', root, m.dir]).status).toBe(0);
    } finally {
      m.umount();
    }
  }, 300_000);

  it('a bad --inode-flags is a usage error before anything is written', async () => {
    const root = path.join(work, 'iflags-root');
    const img = path.join(work, 'iflags-bad.img');
    for (const [args, msg] of [
      [['--inode-flags', 'nodatacow:nope'], /does not exist/],
      [['--inode-flags', 'compress:db'], /unknown flag "compress"/],
      [['--inode-flags', 'db'], /expected FLAGS:PATH/],
      [['--inode-flags', 'nodatacow:../x'], /outside --rootdir/],
      [['--inode-flags', 'nodatacow:db', '--inode-flags', 'nodatasum:db/'], /given twice/],
    ] as const) {
      const r = await mkfs(['-r', root, ...args, img]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(msg);
      expect(fs.existsSync(img)).toBe(false);
    }
    expect((await mkfs(['--inode-flags', 'nodatacow:db', img])).err).toMatch(/--inode-flags needs --rootdir/);
  });
});

describe.skipIf(!!skipReason('mount'))('mkfs --reflink', () => {
  it('file data is cloned from the source files (shared extents on the host btrfs); check --check-data-csum clean; the kernel reads the same tree', async () => {
    // a host btrfs holding both the rootdir and the image
    const hostImg = path.join(work, 'host.img');
    fs.writeFileSync(hostImg, '');
    fs.truncateSync(hostImg, 1 << 30);
    execFileSync('mkfs.btrfs', ['-q', '-f', hostImg]);
    const host = mount(hostImg);
    try {
      const root = path.join(host.dir, 'root');
      fs.mkdirSync(path.join(root, 'd'), { recursive: true });
      const big = Buffer.alloc(3 * 1024 * 1024 + 1234);
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE((i * 2654435761) >>> 0, i); // no zero sector
      big.fill(0, 1 << 20, 2 << 20); // a hole in the middle
      fs.writeFileSync(path.join(root, 'd', 'big'), big);
      fs.writeFileSync(path.join(root, 'small'), 'inline\n');
      fs.writeFileSync(path.join(root, 'aligned'), Buffer.alloc(65536, 0x5a));
      const img = path.join(host.dir, 'made.img');
      const r = await mkfs(['-r', root, '--reflink', img]);
      expect(r.code, r.err).toBe(0);
      execFileSync('sync', ['-f', img]);
      expectCleanData(img);
      // what the image file shares with the source files: the cloned sectors (2 MiB of big, 64 KiB of
      // aligned; btrfs filesystem du counts a few KiB less of the latter), and no more than they hold
      const du = execFileSync('btrfs', ['filesystem', 'du', '--raw', '-s', img], { encoding: 'utf8' }).trim().split('\n').pop()!.trim().split(/\s+/);
      const shared = Number(du[2]);
      expect(shared).toBeGreaterThanOrEqual(2 * 1024 * 1024);
      expect(shared).toBeLessThanOrEqual(2 * 1024 * 1024 + 65536);
      const m = mount(img, 'ro');
      try {
        expect(spawnSync('diff', ['-r', root, m.dir]).status).toBe(0);
      } finally {
        m.umount();
      }
    } finally {
      host.umount();
    }
  }, 300_000);

  it('refused before anything is written: sources not on btrfs, with --compress, without --rootdir', async () => {
    const root = path.join(work, 'iflags-root'); // on the test's work dir: not btrfs here
    fs.mkdirSync(root, { recursive: true });
    const img = path.join(work, 'reflink-bad.img');
    const onBtrfs = fs.statfsSync(work).type === 0x9123683e;
    if (!onBtrfs) {
      const r = await mkfs(['-r', root, '--reflink', img]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/--reflink: --rootdir .* is not on a btrfs filesystem/);
      expect(fs.existsSync(img)).toBe(false);
    }
    expect((await mkfs(['-r', root, '--reflink', '--compress', 'zstd', img])).err).toMatch(/--reflink and --compress exclude each other/);
    expect((await mkfs(['--reflink', img])).err).toMatch(/--reflink needs --rootdir/);
    expect(fs.existsSync(img)).toBe(false);
  });
});
