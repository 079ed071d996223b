import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestOf, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * btrfs send's handling of several subvolumes and of -c without -p, against btrfs send on the same
 * kernel-written image: -e puts them in one stream; -c without -p picks each subvolume's parent among the
 * clone sources (btrfs-progs' find_good_parent), and a subvolume sent becomes a clone source of the next.
 */

const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const why = skipReason('mount');
if (why) console.warn(`send-clone-parent skipped: ${why}`);
const work = tmpDir('btrfs-ts-send-cp-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

// live/ with a base snapshot, then two days of changes (appends, a rename, a delete, a reflink, a new
// directory removed again), each a read-only snapshot; other/ is a subvolume of its own (no origin)
const SOURCE = String.raw`
set -e
btrfs -q subvolume create live
cd live
for i in $(seq 1 40); do head -c $((i * 1500)) /dev/urandom > f$i; done
mkdir d && echo a > d/a
cd ..
btrfs -q subvolume snapshot -r live base
cd live
for i in $(seq 1 8); do head -c 5000 /dev/urandom >> f$i; done
mv d/a d/b && rm f20 && mkdir e && cp --reflink=always f30 e/f30c
cd ..
btrfs -q subvolume snapshot -r live day1
cd live && echo z > f35 && rm -r e && touch new && cd ..
btrfs -q subvolume snapshot -r live day2
btrfs -q subvolume create other
cp --reflink=always live/f10 other/f10
btrfs -q subvolume snapshot -r other other.ro
sync
`;

const image = join(work, 'src.img');
const ours = (name: string, ...args: string[]): Buffer => {
  const out = join(work, `${name}.ours`);
  const r = spawnSync('node', [BIN, 'send', '-q', '-f', out, ...args], { encoding: 'utf8' });
  expect([r.status, r.stderr]).toEqual([0, '']);
  return readFileSync(out);
};
const dumpOf = (stream: Buffer, all = true): string[] => {
  const r = spawnSync('node', [BIN, 'dump', ...(all ? ['--all-streams'] : [])], { input: stream, encoding: 'utf8', maxBuffer: 1 << 26 });
  expect(r.status).toBe(0);
  return r.stdout.split('\n').map((l) => l.replace(/\s+/g, ' '));
};
/** The subvolume lines of a dump (subvol, snapshot: names, uuids, parents): of all its streams, and of the first. */
const heads = (stream: Buffer): { all: string[]; first: string[] } => {
  const subvols = (lines: string[]) => lines.filter((l) => /^(subvol|snapshot) /.test(l));
  return { all: subvols(dumpOf(stream)), first: subvols(dumpOf(stream, false)) };
};

describe.skipIf(!!why)('send of several subvolumes, and -c without -p, as btrfs send', () => {
  const kernel = new Map<string, Buffer>();
  const sources = new Map<string, string[]>();

  beforeAll(async () => {
    execFileSync('truncate', ['-s', '512M', image]);
    execFileSync('mkfs.btrfs', ['-q', image]);
    const m = mount(image);
    try {
      execFileSync('sh', ['-c', SOURCE], { cwd: m.dir, stdio: ['ignore', 'ignore', 'inherit'] });
      const send = (name: string, ...args: string[]) => {
        const out = join(work, `${name}.kernel`);
        execFileSync('btrfs', ['send', '-q', '-f', out, ...args], { cwd: m.dir });
        kernel.set(name, readFileSync(out));
      };
      send('e', '-e', 'base', 'day1');
      send('c', '-c', 'base', 'day1', 'day2');
      send('ce', '-e', '-c', 'base', 'day1', 'day2');
      send('siblings', '-c', 'base', '-c', 'day1', 'day2');
      expect(spawnSync('btrfs', ['send', '-q', '-f', join(work, 'x'), '-c', 'base', 'other.ro'], { cwd: m.dir, encoding: 'utf8' }).stderr).toMatch(/parent determination failed/);
      for (const s of ['base', 'day1', 'day2', 'other.ro']) sources.set(s, await manifestOf(join(m.dir, s)));
    } finally {
      m.umount();
    }
  }, 120_000);

  it('-e: one stream, byte for byte the kernel\'s', () => {
    const s = ours('e', '-e', image, 'base', 'day1');
    expect(heads(s).first).toHaveLength(2);
    expect(s.equals(kernel.get('e')!)).toBe(true);
  });

  it('-c without -p: each subvolume an incremental from the parent btrfs send picks', () => {
    for (const [name, args] of [['c', ['-c', 'base', image, 'day1', 'day2']], ['ce', ['-e', '-c', 'base', image, 'day1', 'day2']], ['siblings', ['-c', 'base', '-c', 'day1', image, 'day2']]] as const) {
      const s = ours(name, ...args);
      const k = heads(kernel.get(name)!);
      expect(k.all.every((l) => l.startsWith('snapshot '))).toBe(true);
      expect(k.first).toHaveLength(name === 'ce' ? 2 : 1);
      expect(heads(s), name).toEqual(k);
      expect(s.length, name).toBeLessThanOrEqual(kernel.get(name)!.length * 1.05);
    }
  });

  /** Manifests of `subvols` after the kernel's receive of our streams `names`, in order, into a new image. */
  async function kernelReceived(target: string, names: string[], subvols: string[]): Promise<Map<string, string[]>> {
    execFileSync('truncate', ['-s', '512M', target]);
    execFileSync('mkfs.btrfs', ['-q', target]);
    const m = mount(target);
    try {
      for (const n of names) execFileSync('btrfs', ['receive', '-q', '-f', join(work, `${n}.ours`), m.dir]);
      const got = new Map<string, string[]>();
      for (const s of subvols) got.set(s, await manifestOf(join(m.dir, s)));
      return got;
    } finally {
      m.umount();
    }
  }

  it("the kernel's receive of those streams gives the source trees", async () => {
    expect(ours('base', image, 'base').length).toBeGreaterThan(0);
    const got = await kernelReceived(join(work, 'target.img'), ['base', 'c'], ['base', 'day1', 'day2']);
    for (const s of ['base', 'day1', 'day2']) expect(got.get(s), s).toEqual(sources.get(s));
  });

  it('-c with no parent to pick (btrfs send refuses): a full send that clones, received whole', async () => {
    const s = ours('full-c', '-c', 'base', image, 'other.ro');
    const h = heads(s);
    expect(h.all).toHaveLength(1);
    expect(h.all[0]).toMatch(/^subvol \.\/other\.ro /);
    expect(dumpOf(s).filter((l) => /^clone \.\/other\.ro\/f10 .* from=\S*f10 /.test(l))).toHaveLength(1);
    const got = await kernelReceived(join(work, 'target2.img'), ['base', 'full-c'], ['other.ro']);
    expect(got.get('other.ro')).toEqual(sources.get('other.ro'));
  });
});
