import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MUTATIONS, makeBaseImage, makeDamaged } from './helpers/damaged-images.js';
import { editSuperblock } from './helpers/image-mutate.js';
import { makeTreeLogImage } from './helpers/tree-log-image.js';
import { CLI, type CommandResult, runAllCommands, runCli } from './helpers/image-harness.js';
import { hasTool, skipReason } from './helpers/oracle.js';
import { canMount } from './image-write-helpers.js';
import { ImageReader } from '../src/image/read/image.js';
import { fromBlockDevice } from '../src/image/read/source.js';
import { readTreeLog } from '../src/image/write/log-replay.js';
import { openFilesystem } from '../src/image/write/open.js';
import { FileDevice } from '../src/io/image-file.js';
import { sha256 as sha256File } from './helpers/layouts.js';

/**
 * Every reading command and a small receive on images damaged on purpose (test/helpers/damaged-images.ts)
 * and, when BTRFS_TS_EXTRA_IMAGES names a directory, on every image in it (btrfs-progs' fuzz/fsck/misc
 * test images, decompressed): ok or a one-line error, never a trace or a hang, and a failed receive leaves
 * the image as it was. Where the kernel mounts an image, the reader's manifest equals the mount's.
 */

const HAVE_DIST = existsSync(join(__dirname, '..', 'dist', 'cli', 'main.js'));
const HAVE_MKFS = hasTool('mkfs.btrfs');
const EXTRA = process.env.BTRFS_TS_EXTRA_IMAGES;

/** Receive must refuse these: the kernel would not mount the result, or the open cannot work. */
const RECEIVE_REFUSED = new Set([
  'nodesize-128k', 'sectorsize-odd', 'stripesize-0', 'num-devices-2', 'root-level-9', 'sys-array-huge', 'csum-type-7',
  'super-flags-changing', 'bytes-used-0', 'root-item-level', 'root-item-generation', 'root-item-bytenr', 'root-item-dirid',
  'no-block-group', 'dir-isize', 'no-uuid-tree',
]);

const figures: string[] = [];
let work = '';
let base = '';

function record(image: string, results: CommandResult[]): void {
  figures.push(`${image}: ${results.map((r) => `${r.command}=${r.outcome}${r.line ? ` (${r.line.replace(/^.*\[(\w+)\]$/, '$1')})` : ''}`).join(' ')}`);
  const bad = results.filter((r) => r.problems.length > 0).map((r) => `${r.command}: ${r.problems.join('; ')}`);
  expect(bad, `${image}\n${bad.join('\n')}`).toEqual([]);
}

/**
 * Mounts a copy (read-write: replaying a log needs it) and returns its manifest, or why not. Directories
 * the kernel makes up at lookup (the stub of a subvolume nested in a snapshot) carry the mount's time; the
 * `mtime` of every entry newer than the mount is masked in both manifests.
 */
function kernelManifest(image: string): string | { skipped: string } {
  const mnt = mkdtempSync(join(work, 'mnt-'));
  const copy = `${mnt}.img`;
  execFileSync('cp', ['--sparse=always', image, copy]);
  try {
    const mountedAt = Math.floor(Date.now() / 1000);
    const r = spawnSync('mount', ['-o', 'loop', copy, mnt], { encoding: 'utf8' });
    if (r.status !== 0) return { skipped: `kernel refuses to mount: ${r.stderr.trim()}` };
    try {
      const m = spawnSync(process.execPath, [CLI, 'manifest', '--nlink', mnt], { encoding: 'latin1', maxBuffer: 1 << 28 });
      if (m.status !== 0) return { skipped: `reading the mount fails: ${m.stderr.trim().split('\n')[0]}` };
      return maskFresh(m.stdout, mountedAt);
    } finally {
      execFileSync('umount', [mnt]);
    }
  } finally {
    rmSync(mnt, { recursive: true, force: true });
    rmSync(copy, { force: true });
  }
}

const freshPaths = new Set<string>();
function maskFresh(manifest: string, since: number): string {
  return manifest.replace(/^(\S+)(.*) mtime=(\d+)\.\d+/gm, (all, path: string, mid: string, sec: string) => {
    if (Number(sec) < since) return all;
    freshPaths.add(path);
    return `${path}${mid} mtime=(mount time)`;
  });
}
/** Our manifest with the entries the kernel's showed with the mount's time masked the same way. */
function maskLike(manifest: string): string {
  return manifest.replace(/^(\S+)(.*) mtime=\d+\.\d+/gm, (all, path: string, mid: string) => (freshPaths.has(path) ? `${path}${mid} mtime=(mount time)` : all));
}

describe('readers and receive on damaged images', () => {
  if (!HAVE_DIST || !HAVE_MKFS) {
    it('needs a build and mkfs.btrfs', () => skipReason('image-damaged', !HAVE_DIST ? 'run `npx tsc -p .` first (bin/btrfs-ts.js needs dist/)' : 'mkfs.btrfs not installed'));
    return;
  }
  beforeAll(() => {
    work = mkdtempSync('/tmp/btrfs-ts-damaged-');
    base = makeBaseImage(work);
  });
  afterAll(() => {
    if (figures.length) console.log(`image-damaged figures:\n${figures.join('\n')}`);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const m of MUTATIONS) {
    it(`${m.name}: ${m.what}`, async () => {
      const img = await makeDamaged(base, work, m);
      const results = await runAllCommands(img, join(work, `w-${m.name}`));
      record(m.name, results);
      const recv = results.find((r) => r.command === 'receive')!;
      if (RECEIVE_REFUSED.has(m.name)) expect(recv.outcome, `receive into ${m.name}: ${recv.line}`).not.toBe('ok');
      if (m.name === 'no-uuid-tree') expect(recv.line).toMatch(/it has no UUID tree.*IMAGE_NO_TREE/);
      // (level 7 is a level a tree may have: the block's own level disagrees, found when it is read)
      if (/^root-item-(generation|bytenr|dirid)$/.test(m.name)) expect(recv.line).toMatch(/root item of tree 5 has .*\[IMAGE_BAD_ROOT_ITEM\]/);
      if (m.name === 'pristine') expect(results.every((r) => r.outcome === 'ok')).toBe(true);
    }, 300_000);
  }

  it('two entries of one name: the first one of the DIR_ITEM wins, as on a mount; extract keeps one', async () => {
    const img = await makeDamaged(base, work, MUTATIONS.find((m) => m.name === 'dup-name')!);
    const cat = await runCli(['cat', img, 'aa'], 'cat');
    expect(cat.stdout).toBe('first\n');
    const dest = join(work, 'dup-x');
    expect((await runCli(['extract', '--no-xattrs', img, dest], 'extract')).outcome).toBe('ok');
    expect(readFileSync(join(dest, 'aa'), 'latin1')).toBe('first\n');
    expect(readdirSync(dest).filter((n) => n === 'aa')).toHaveLength(1);
    if (!canMount) return skipReason('image-damaged kernel comparison', 'not root or no loop devices');
    const k = kernelManifest(img);
    if (typeof k !== 'string') return skipReason('image-damaged dup-name kernel comparison', k.skipped);
    expect(maskLike((await runCli(['manifest', '--nlink', img], 'manifest')).stdout)).toBe(k);
  }, 120_000);

  it('a superblock counting 2 devices when every chunk is on this one is read, as the kernel mounts it; receive refuses', async () => {
    const img = await makeDamaged(base, work, MUTATIONS.find((m) => m.name === 'num-devices-2')!);
    const results = await runAllCommands(img, join(work, 'w-ndev'));
    expect(results.filter((r) => r.command !== 'receive').map((r) => `${r.command}=${r.outcome}`)).toEqual(['ls -l=ok', 'cat=ok', 'subvolume list=ok', 'subvolume show=ok', 'compsize=ok', 'qgroup show=ok', 'manifest=ok', 'extract=ok']);
    expect(results.find((r) => r.command === 'receive')!.line).toMatch(/counts 2 devices.*\[IMAGE_MULTI_DEVICE\]/);
    if (!canMount) return skipReason('image-damaged kernel comparison', 'not root or no loop devices');
    const k = kernelManifest(img);
    if (typeof k !== 'string') return skipReason('image-damaged num-devices-2 kernel comparison', k.skipped);
    expect(maskLike((await runCli(['manifest', '--nlink', img], 'manifest')).stdout)).toBe(k);
  }, 120_000);

  it('a NUL in a symlink target ends it there, as the kernel\'s readlink does', async () => {
    const img = await makeDamaged(base, work, MUTATIONS.find((m) => m.name === 'symlink-nul')!);
    const ls = await runCli(['ls', '-l', img, 'sym'], 'ls');
    expect(ls.stdout).toMatch(/ sym -> d\n$/);
    if (!canMount) return skipReason('image-damaged kernel comparison', 'not root or no loop devices');
    const k = kernelManifest(img);
    if (typeof k !== 'string') return skipReason('image-damaged symlink-nul kernel comparison', k.skipped);
    expect(maskLike((await runCli(['manifest', '--nlink', img], 'manifest')).stdout)).toBe(k);
  }, 120_000);

  it('a symlink target of NUL bytes only reads as empty, as on a mount; extract leaves it out with a warning', async () => {
    const img = await makeDamaged(base, work, MUTATIONS.find((m) => m.name === 'symlink-zeroed')!);
    expect((await runCli(['ls', '-l', img, 'sym'], 'ls')).stdout).toMatch(/ sym -> \n$/);
    const dest = join(work, 'zeroed-x');
    const x = spawnSync(process.execPath, [CLI, 'extract', '--no-xattrs', img, dest], { encoding: 'utf8' });
    expect(x.status).toBe(0);
    expect(x.stderr).toMatch(/WARNING: symlink .*sym \(inode \d+ of subvolume 5\) has an empty target, which cannot be created: skipped/);
    expect(existsSync(join(dest, 'sym'))).toBe(false);
    expect(readFileSync(join(dest, 'd', 'f1')).length).toBeGreaterThan(0);
    if (!canMount) return skipReason('image-damaged kernel comparison', 'not root or no loop devices');
    const k = kernelManifest(img);
    if (typeof k !== 'string') return skipReason('image-damaged symlink-zeroed kernel comparison', k.skipped);
    expect(maskLike((await runCli(['manifest', '--nlink', img], 'manifest')).stdout)).toBe(k);
  }, 120_000);

  it('i_size near 2^64 is reported; a 1 TiB sparse file is extracted as holes, and manifest refuses to hash it', async () => {
    const huge = await makeDamaged(base, work, MUTATIONS.find((m) => m.name === 'huge-isize')!);
    const e = await runCli(['cat', huge, 'sparse'], 'cat');
    expect(e.line).toMatch(/i_size 18446744073709547520, beyond the largest file size.*IMAGE_BAD_INODE_SIZE/);
    const sparse = await makeDamaged(base, work, MUTATIONS.find((m) => m.name === 'big-sparse')!);
    const dest = join(work, 'sparse-x');
    expect((await runCli(['extract', '--no-xattrs', sparse, dest], 'extract')).problems).toEqual([]);
    const st = statSync(join(dest, 'sparse'));
    expect(st.size).toBe(2 ** 40);
    expect(st.blocks * 512).toBeLessThan(8 << 20); // the base file's 3 MiB of data, not 1 TiB of zeros
    expect((await runCli(['manifest', sparse], 'manifest')).line).toMatch(/IMAGE_SPARSE_TOO_BIG/);
  }, 120_000);

  it('a tree log made by the kernel (new file, append, renames, new dir, overwrite, truncate, unlink, hard link, extended-ref names unlinked, xattr set and removed, a directory holding a subvolume) is replayed as a mount replays it', async () => {
    if (!canMount) return skipReason('image-damaged tree log', 'not root or no loop devices: the log image needs a kernel mount');
    const img = makeTreeLogImage(mkdtempSync(join(work, 'log-')));
    if (typeof img !== 'string') return skipReason('image-damaged tree log', img.skipped);
    const results = await runAllCommands(img, join(work, 'w-log'));
    record('tree-log', results);
    // receive replays the log into the trees (the harness checked the result with btrfs check)
    expect(results.find((r) => r.command === 'receive')!.outcome).toBe('ok');
    const ours = await runCli(['manifest', '--nlink', img], 'manifest');
    expect(ours.problems).toEqual([]);
    // extended-ref unlinks, an xattr removal and a directory holding a subvolume are replayed, not warned about
    const warned = spawnSync(process.execPath, [CLI, 'ls', img, '/'], { encoding: 'utf8' }).stderr;
    expect(warned).not.toMatch(/replayed in memory without/);
    const k = kernelManifest(img);
    if (typeof k !== 'string') return skipReason('image-damaged tree log kernel comparison', k.skipped);
    expect(maskLike(ours.stdout)).toBe(k);
    await receiveReplaysLog(img, k);
    // the log matters: without it the reader shows the last commit, which differs
    editSuperblock(img, (sb) => { sb.log_root = 0n; sb.log_root_level = 0; });
    expect((await runCli(['manifest', '--nlink', img], 'manifest')).stdout).not.toBe(k);
  }, 300_000);

  /**
   * Receive into a copy of the log image: until the commit, the log's blocks are kept from allocation
   * (the superblock on disk still points at them); after it, log_root is 0, btrfs check (data checksums
   * too) is clean, and the kernel shows what its own replay of the log shows, beside the new subvolume.
   */
  async function receiveReplaysLog(img: string, kernel: string): Promise<void> {
    const copy = join(work, 'log-received.img');
    execFileSync('cp', ['--sparse=always', img, copy]);
    const dev = FileDevice.open(copy);
    try {
      const log = (await readTreeLog(await ImageReader.open(fromBlockDevice(dev))))!;
      expect(log.blocks.length).toBeGreaterThan(1);
      const fs = await openFilesystem(dev);
      // first fit would hand out the log's blocks first: they follow the committed state's
      for (let i = 0; i < 64; i++) expect(log.blocks).not.toContain(fs.metaSpace.alloc(5n, 0));
    } finally {
      dev.close();
    }
    // a transaction abandoned here leaves the image as it was: the open replayed the log in memory only
    expect(sha256File(copy)).toBe(sha256File(img));
    const r = spawnSync(process.execPath, [CLI, 'receive', '-q', '-f', join(__dirname, '..', 'streams', 'sample.stream'), copy], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(execFileSync('btrfs', ['inspect-internal', 'dump-super', copy], { encoding: 'utf8' })).toMatch(/^log_root\s+0$/m);
    const chk = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', copy], { encoding: 'utf8' });
    expect(chk.status, chk.stdout + chk.stderr).toBe(0);
    const k = kernelManifest(copy);
    if (typeof k !== 'string') throw new Error(k.skipped);
    expect(k.split('\n').filter((l) => !/^sample[ /]/.test(l)).join('\n')).toBe(kernel);
    expect(k).toMatch(/^sample dir /m);
    rmSync(copy, { force: true });
  }

  /**
   * Where the kernel mounts an extra image and reads it whole, the reader's manifest must be the mount's;
   * where only one side reads it, that is reported. Fuzzed images (progs' fuzz-tests) are not mounted:
   * they were made to crash parsers, and the kernel is shared with everyone on this machine.
   */
  function compareWithKernel(name: string, image: string, ours: CommandResult): string {
    if (!canMount) return 'not mounted (not root or no loop devices)';
    if (name.startsWith('fuzz-tests')) return 'not mounted (fuzzed image)';
    const k = kernelManifest(image);
    if (typeof k !== 'string') return ours.outcome === 'ok' ? `reader ok, ${k.skipped.slice(0, 160)}` : `both fail (${k.skipped.slice(0, 120)})`;
    if (ours.outcome !== 'ok') return `kernel reads it, the reader fails: ${ours.line}`;
    const full = spawnSync(process.execPath, [CLI, 'manifest', '--nlink', image], { encoding: 'latin1', maxBuffer: 1 << 28 });
    expect(maskLike(full.stdout), `${name}: reader and kernel differ`).toBe(k);
    return `same manifest (${k.split('\n').length - 1} entries)`;
  }

  describe('extra images (BTRFS_TS_EXTRA_IMAGES)', () => {
    if (!EXTRA) {
      it('not given', () => skipReason('image-damaged extra images', 'BTRFS_TS_EXTRA_IMAGES is not set: only the generated images are tested'));
      return;
    }
    const files = readdirSync(EXTRA).filter((f) => /\.(img|raw)$/.test(f)).sort();
    for (const f of files) {
      it(f, async () => {
        const dir = join(work, `extra-${f}`);
        mkdirSync(dir, { recursive: true });
        const image = join(EXTRA, f);
        const results = await runAllCommands(image, dir);
        record(f, results);
        console.log(`FIGURE ${figures[figures.length - 1]} kernel: ${compareWithKernel(f, image, results.find((r) => r.command === 'manifest')!)}`);
      }, 600_000);
    }
  });
});
