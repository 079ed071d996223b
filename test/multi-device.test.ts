import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkCopies, locate } from '../src/image/read/stripes.js';
import { BTRFS_BLOCK_GROUP_DATA, BTRFS_BLOCK_GROUP_RAID10, type BtrfsChunk } from '../src/image/structs.js';
import { openImage } from '../src/index.js';
import { CLI } from './helpers/image-harness.js';
import { skipReason } from './image-write-helpers.js';

/**
 * Multi-device filesystems read from an image file of each device (`--device FILE`, as `mount -o
 * device=`): the kernel makes each layout (mkfs.btrfs over loop devices of our own, files written through
 * its mount, a read-only snapshot, `btrfs send` of it while mounted); unmounted, btrfs-ts must list the
 * same tree and send the same streams byte for byte from the files. Striped profiles (RAID0, RAID10,
 * RAID5/6 with their turning parity) put every 64 KiB of a file on another device, so a wrong mapping
 * cannot give equal streams.
 */

const why = skipReason('mount');
if (why) console.warn(`multi-device: skipping: ${why}`);

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'latin1', maxBuffer: 1 << 28 });
let dir = '';

interface Layout { name: string; devices: number; mkfs: string[]; mount: string }
const LAYOUTS: Layout[] = [
  { name: 'raid0 data, raid1 metadata, zstd', devices: 2, mkfs: ['-d', 'raid0', '-m', 'raid1'], mount: 'compress=zstd' },
  { name: 'raid10', devices: 4, mkfs: ['-d', 'raid10', '-m', 'raid10'], mount: 'compress=lzo' },
  { name: 'raid5 data, raid1 metadata', devices: 3, mkfs: ['-d', 'raid5', '-m', 'raid1'], mount: '' },
  { name: 'raid6 data, raid1c3 metadata, zstd', devices: 4, mkfs: ['-d', 'raid6', '-m', 'raid1c3'], mount: 'compress=zstd' },
];

/** What the kernel made of one layout: the device files, and its manifest and streams of `snap`. */
interface Made { files: string[]; manifest: string; full: Buffer; compressed: Buffer; big: Buffer }

function make(l: Layout, at: string): Made {
  mkdirSync(at);
  const files = Array.from({ length: l.devices }, (_, i) => join(at, `d${i + 1}.img`));
  for (const f of files) execFileSync('truncate', ['-s', '600M', f]);
  const loops = files.map((f) => execFileSync('losetup', ['-f', '--show', f], { encoding: 'utf8' }).trim());
  const mnt = join(at, 'mnt');
  mkdirSync(mnt);
  try {
    execFileSync('mkfs.btrfs', ['-q', '-f', ...l.mkfs, ...loops], { stdio: 'pipe' });
    execFileSync('mount', ['-o', [l.mount, ...loops.slice(1).map((d) => `device=${d}`)].filter(Boolean).join(','), loops[0]!, mnt]);
    try {
      execFileSync('sh', ['-e', '-c', `
        btrfs -q subvolume create s; cd s; mkdir a b
        for i in $(seq 1 12); do head -c $((i * 41000)) /dev/urandom > a/r$i; seq 1 $((i * 7000)) > b/t$i; done
        head -c 5M /dev/urandom > big; cat b/t12 b/t11 >> big
        dd if=/dev/zero of=sparse bs=1 count=1 seek=3M status=none; echo x > small; ln -s a/r1 sym; ln a/r2 b/hard
        cd ..; btrfs -q subvolume snapshot -r s snap; sync`], { cwd: mnt, stdio: 'pipe' });
      const manifest = execFileSync(process.execPath, [CLI, 'manifest', join(mnt, 'snap')], { encoding: 'latin1' });
      const send = (...a: string[]): Buffer => execFileSync('btrfs', ['send', '-q', ...a, join(mnt, 'snap')], { maxBuffer: 1 << 28 });
      return { files, manifest, full: send(), compressed: send('--compressed-data'), big: readFileSync(join(mnt, 'snap', 'big')) };
    } finally {
      execFileSync('umount', [mnt]);
    }
  } finally {
    for (const d of loops) execFileSync('losetup', ['-d', d]);
  }
}

const made = new Map<string, Made>();

beforeAll(() => {
  if (why) return;
  dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-multidev-'));
  LAYOUTS.forEach((l, i) => made.set(l.name, make(l, join(dir, `fs${i}`))));
}, 240_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const devicesOf = (m: Made): string[] => m.files.slice(1).flatMap((f) => ['--device', f]);

describe('where a striped copy puts a chunk offset (btrfs_map_block)', () => {
  const members = [{ devid: 1n, offset: 1000n }, { devid: 2n, offset: 2000n }, { devid: 3n, offset: 3000n }];
  const K = 65536n;
  it('RAID0: stripe after stripe over the members, a row at a time', () => {
    const l = { members, stripeLen: K, dataStripes: 3, rotate: false };
    expect(locate(l, 5n)).toEqual({ devid: 1n, physical: 1005n, run: K - 5n });
    expect(locate(l, 2n * K + 7n)).toEqual({ devid: 3n, physical: 3007n, run: K - 7n });
    expect(locate(l, 3n * K)).toEqual({ devid: 1n, physical: 1000n + K, run: K });
  });
  it('RAID5: two data stripes a row, the first one turning by a member each row', () => {
    const l = { members, stripeLen: K, dataStripes: 2, rotate: true };
    expect(locate(l, 0n).devid).toBe(1n);
    expect(locate(l, K).devid).toBe(2n);
    // row 1: its data starts on member 1 (parity moved to member 0)
    expect(locate(l, 2n * K)).toEqual({ devid: 2n, physical: 2000n + K, run: K });
    expect(locate(l, 3n * K + 1n)).toEqual({ devid: 3n, physical: 3000n + K + 1n, run: K - 1n });
    // row 2: data on members 2 and 0
    expect(locate(l, 4n * K).devid).toBe(3n);
    expect(locate(l, 5n * K)).toEqual({ devid: 1n, physical: 1000n + 2n * K, run: K });
  });
});

describe('the copies of a chunk (RAID10 mirrors; what the kernel refuses)', () => {
  const chunk = (stripes: number, stripeLen = 65536n, sub = 2): BtrfsChunk => ({
    length: 1n << 30n, owner: 2n, stripe_len: stripeLen, type: BTRFS_BLOCK_GROUP_DATA | BTRFS_BLOCK_GROUP_RAID10, io_align: 65536,
    io_width: 65536, sector_size: 4096, sub_stripes: sub,
    stripes: Array.from({ length: stripes }, (_, i) => ({ devid: BigInt(i + 1), offset: BigInt(i) << 20n, dev_uuid: new Uint8Array(16) })),
  });
  it('RAID10 over 4: two copies, each striped over one of every mirrored pair', () => {
    const copies = chunkCopies(0n, chunk(4));
    expect(copies.map((c) => c.members.map((m) => m.devid))).toEqual([[1n, 3n], [2n, 4n]]);
    expect(copies.every((c) => c.dataStripes === 2 && !c.rotate)).toBe(true);
  });
  it('refuses a stripe length but 64 KiB and stripe counts the profile cannot have', () => {
    expect(() => chunkCopies(0n, chunk(4, 4096n))).toThrow(/stripe_len 4096, not 65536/);
    expect(() => chunkCopies(0n, chunk(3))).toThrow(/3 stripes, sub_stripes 2 for RAID10/);
    expect(() => chunkCopies(0n, chunk(4, 65536n, 0))).toThrow(/sub_stripes 0/);
  });
  it('random chunk items: an ImageError, or copies whose every offset lands inside one of its members\' stripes', () => {
    let seed = 20261127;
    const rnd = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const profiles = [0n, 1n << 3n, 1n << 4n, 1n << 5n, 1n << 6n, 1n << 7n, 1n << 8n, 1n << 9n, 1n << 10n, 3n << 3n];
    let ok = 0;
    for (let i = 0; i < 2000; i++) {
      const c = chunk(rnd(9), rnd(4) === 0 ? BigInt(rnd(3) * 4096) : 65536n, rnd(4));
      c.type = BTRFS_BLOCK_GROUP_DATA | profiles[rnd(profiles.length)]!;
      c.length = BigInt(1 + rnd(1 << 30));
      let copies;
      try {
        copies = chunkCopies(0n, c);
      } catch (e) {
        expect((e as { code?: string }).code).toBe('IMAGE_BAD_CHUNK');
        continue;
      }
      ok++;
      for (const l of copies) {
        // per member: the bytes of the chunk it holds are at most length / data stripes, rounded up to a stripe
        const room = (c.length / BigInt(l.dataStripes) / 65536n + 1n) * 65536n;
        for (let k = 0; k < 8; k++) {
          const at = locate(l, BigInt(rnd(Number(c.length))));
          const m = l.members.find((x) => x.devid === at.devid)!;
          expect(at.physical >= m.offset && at.physical < m.offset + room).toBe(true);
          expect(at.run > 0n).toBe(true);
        }
      }
    }
    expect(ok).toBeGreaterThan(200);
  });
});

describe.skipIf(why !== undefined)('a multi-device filesystem from image files of its devices', () => {
  for (const l of LAYOUTS) {
    it(`${l.name} (${l.devices} devices): manifest and streams as the kernel's`, () => {
      const m = made.get(l.name)!;
      const man = cli('manifest', m.files[0]!, '--path', 'snap', ...devicesOf(m));
      expect(man.status, man.stderr).toBe(0);
      // the first line names the listed root
      expect(man.stdout.split('\n').slice(1)).toEqual(m.manifest.split('\n').slice(1));
      for (const [args, kernel] of [[[], m.full], [['--compressed-data'], m.compressed]] as const) {
        const s = spawnSync(process.execPath, [CLI, 'send', '-q', ...args, m.files[0]!, 'snap', ...devicesOf(m)], { maxBuffer: 1 << 28 });
        expect(s.status, s.stderr.toString()).toBe(0);
        expect(Buffer.compare(s.stdout, kernel), `send ${args.join(' ')}`).toBe(0);
      }
    });
  }

  it('the library opens it too (openImage with devices)', async () => {
    const m = made.get(LAYOUTS[2]!.name)!;
    const img = await openImage(m.files[0]!, { devices: m.files.slice(1) });
    try {
      expect(Buffer.compare(Buffer.from(await img.readFile('snap/big')), m.big)).toBe(0);
    } finally {
      await img.close();
    }
  });

  it('without its devices: one line saying what to give; with --degraded what has a copy is read, the rest names the device', () => {
    const m = made.get(LAYOUTS[2]!.name)!; // raid5 data over 3 devices, raid1 metadata
    const alone = cli('ls', m.files[0]!, 'snap');
    expect(alone.status).toBe(1);
    expect(alone.stderr).toMatch(/^btrfs-ts: ERROR: .*this image is devid 1 of 3 devices; give its other devices with --device FILE \[IMAGE_MULTI_DEVICE\]\n$/);
    const short = cli('ls', m.files[0]!, 'snap', '--device', m.files[1]!);
    expect(short.status).toBe(1);
    expect(short.stderr).toMatch(/^btrfs-ts: ERROR: the filesystem has 3 devices, 2 given \(devid 1, 2\): give the others with --device FILE, or read what has a copy on these with --degraded \[IMAGE_MISSING_DEVICE\]\n$/);
    const two = ['--device', m.files[1]!, '--degraded'];
    // every metadata chunk has a copy on devices 1 or 2
    const ls = cli('ls', m.files[0]!, 'snap', ...two);
    expect(ls.status, ls.stderr).toBe(0);
    expect(ls.stdout.split('\n')).toEqual(expect.arrayContaining(['a', 'b', 'big', 'small', 'sparse', 'sym']));
    const cat = cli('cat', m.files[0]!, 'snap/big', ...two);
    expect(cat.status).toBe(1);
    expect(cat.stderr).toMatch(/its copies need devid 3 \(device [0-9a-f-]{36}\), not given \(--device FILE\) \[IMAGE_MISSING_DEVICE\]\n$/);
  });

  it('refuses devices that are not this filesystem\'s, one twice, or one of another generation', () => {
    const [a, b] = [made.get(LAYOUTS[0]!.name)!, made.get(LAYOUTS[2]!.name)!];
    const other = cli('ls', a.files[0]!, '--device', b.files[1]!);
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/device .*d2\.img belongs to filesystem [0-9a-f-]{36}, .*d1\.img to [0-9a-f-]{36} \[IMAGE_DEVICE_MISMATCH\]/);
    const twice = cli('ls', b.files[0]!, '--device', b.files[1]!, '--device', b.files[1]!);
    expect(twice.status).toBe(1);
    expect(twice.stderr).toMatch(/is devid 2, as .* is \[IMAGE_DEVICE_MISMATCH\]/);
    // a copy of device 2 from before the kernel's last commit: mount once more, write, unmount
    const old = join(dir, 'old-d2.img');
    copyFileSync(a.files[1]!, old);
    const loops = a.files.map((f) => execFileSync('losetup', ['-f', '--show', f], { encoding: 'utf8' }).trim());
    const mnt = join(dir, 'mnt-gen');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-o', `device=${loops[1]}`, loops[0]!, mnt]);
      execFileSync('sh', ['-c', 'echo later > later; sync'], { cwd: mnt });
      execFileSync('umount', [mnt]);
    } finally {
      for (const d of loops) execFileSync('losetup', ['-d', d]);
    }
    const stale = cli('ls', a.files[0]!, '--device', old);
    expect(stale.status).toBe(1);
    expect(stale.stderr).toMatch(/device .*old-d2\.img was last written at generation \d+, .*d1\.img at \d+: not one state of the filesystem \[IMAGE_DEVICE_MISMATCH\]/);
  });
});
