import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prettySize } from '../src/cli/subvolume-show.js';
import { STREAMS_DIR } from './helpers/streams.js';
import { kernelImage, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * `btrfs-ts subvolume show` against `btrfs subvolume show` on the same image, mounted: every subvolume of
 * a kernel-written image (snapshots, a nested subvolume, read-only and writable ones, quotas with a limit)
 * and one received by btrfs-ts (received uuid, send and receive transids and times), in a time zone with a
 * half-hour offset.
 */

const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const why = skipReason('mount');
if (why) console.warn(`subvolume-show kernel comparison skipped: ${why}`);
const work = tmpDir('btrfs-ts-show-');
afterAll(() => rmSync(work, { recursive: true, force: true }));
const env = { ...process.env, TZ: 'Asia/Kolkata' };

const SOURCE = String.raw`
set -e
btrfs quota enable .
btrfs -q subvolume create live
head -c 300000 /dev/urandom > live/f
mkdir live/dir
btrfs -q subvolume create live/nested
btrfs -q subvolume snapshot -r live base
btrfs -q subvolume snapshot live rw-snap
btrfs -q subvolume snapshot -r live snap2
btrfs qgroup limit 10M live
btrfs qgroup limit -e 5M base
sync
btrfs quota rescan -w . >/dev/null
`;

it('sizes as progs prints them', () => {
  expect([0n, 1023n, 1024n, 16384n, 1536n * 1024n, 10n << 20n, 5n << 30n].map(prettySize)).toEqual(
    ['0.00B', '1023.00B', '1.00KiB', '16.00KiB', '1.50MiB', '10.00MiB', '5.00GiB']);
});

describe.skipIf(!!why)('subvolume show, as btrfs subvolume show', () => {
  const image = join(work, 'k.img');
  const ours = (...args: string[]) => spawnSync('node', [BIN, 'subvolume', 'show', image, ...args], { encoding: 'utf8', env });

  beforeAll(() => {
    kernelImage(image, SOURCE);
    // a subvolume received by btrfs-ts: received uuid, stransid, rtransid and rtime set
    expect(spawnSync('node', [BIN, 'receive', '-q', '-f', join(STREAMS_DIR, 'sample.stream'), image]).status).toBe(0);
  }, 120_000);

  it('every subvolume, line for line', () => {
    const paths = ['', 'live', 'live/nested', 'base', 'rw-snap', 'snap2', 'sample'];
    const kernel = new Map<string, string>();
    const m = mount(image, 'ro');
    try {
      for (const p of paths) kernel.set(p, execFileSync('btrfs', ['subvolume', 'show', join(m.dir, p)], { encoding: 'utf8', env }));
    } finally {
      m.umount();
    }
    for (const p of paths) {
      const r = ours(`/${p}`);
      expect([r.status, r.stderr], p).toEqual([0, '']);
      expect(r.stdout, p).toBe(kernel.get(p));
    }
    // what is checked is not empty: quotas with the limits, snapshots, the received identity
    expect(kernel.get('live')).toMatch(/Quota group:\t\t0\/256\n\t  Limit referenced:\t10\.00MiB\n/);
    expect(kernel.get('live')).toMatch(/Snapshot\(s\):\n\t\t\t\tbase\n\t\t\t\trw-snap\n\t\t\t\tsnap2\n/);
    expect(kernel.get('sample')).toMatch(/Received UUID: \t\t7d20c374-3235-ca4c-ba67-841676a50c81\n[^]*Receive time: \t\t\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0530\n/);
  });

  it('the subvolume holding a path, or given by id or uuid', () => {
    const live = ours('/live');
    expect(ours('/live/dir').stdout).toBe(live.stdout);
    expect(ours('-r', '256').stdout).toBe(live.stdout);
    const uuid = /UUID: \t\t\t(\S+)/.exec(live.stdout)![1]!;
    expect(ours('-u', uuid.toUpperCase()).stdout).toBe(live.stdout);
    const none = ours('-r', '999');
    expect([none.status, none.stderr]).toEqual([1, expect.stringMatching(/^btrfs-ts: ERROR: no subvolume of id 999 in .*k\.img \[IMAGE_NO_SUBVOLUME\]\n$/)]);
    expect(ours('-r', '256', '-u', uuid).status).toBe(2);
  });
});
