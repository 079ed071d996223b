import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAMS_DIR } from './helpers/streams.js';
import { kernelImage, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * `btrfs-ts subvolume list` with btrfs-progs' options against `btrfs subvolume list` on the same image,
 * mounted: nested subvolumes, read-only and writable snapshots (one of a nested subvolume), one received by
 * btrfs-ts, one deleted and not cleaned up yet; every option alone and a few together, from the top and
 * from inside a subvolume.
 */

const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const why = skipReason('mount');
if (why) console.warn(`subvolume-list-progs skipped: ${why}`);
const work = tmpDir('btrfs-ts-list-');
afterAll(() => rmSync(work, { recursive: true, force: true }));
const env = { ...process.env, TZ: 'America/St_Johns' };

const SOURCE = String.raw`
set -e
btrfs -q subvolume create live
btrfs -q subvolume create live/nested
mkdir live/d
btrfs -q subvolume create live/d/deep
btrfs -q subvolume snapshot -r live base
touch live/f
btrfs -q subvolume snapshot live rw
btrfs -q subvolume snapshot -r live/nested live/nested-snap
btrfs -q subvolume create gone
(cd gone && seq 1 5000 | xargs touch)
sync
btrfs -q subvolume delete gone
`;

// (the unmount comes before the kernel's cleaner has removed `gone`, and a read-only mount leaves it: -d lists it)
const FLAGS = ['', '-p', '-a', '-o', '-s', '-t', '-c -g', '-u -q -R', '-t -p -c -s', '-a -p', '-r', '-d', '-d -t -p', '-d -a',
  '--sort=-gen,path', '--sort=path', '--sort=ogen,-rootid', '-G +8', '-G -7', '-C 7'];

describe.skipIf(!!why)('subvolume list with btrfs-progs\' options, as btrfs subvolume list', () => {
  const image = join(work, 'l.img');
  beforeAll(() => {
    kernelImage(image, SOURCE);
    expect(spawnSync('node', [BIN, 'receive', '-q', '--dest', 'live/d', '-f', join(STREAMS_DIR, 'sample.stream'), image]).status).toBe(0);
  }, 120_000);

  it('every option, from the top and from inside a subvolume, line for line', () => {
    const kernel = new Map<string, string>();
    const m = mount(image, 'ro');
    try {
      for (const f of FLAGS) for (const at of ['', 'live']) kernel.set(`${f}|${at}`, execFileSync('sh', ['-c', `btrfs subvolume list ${f} "$0"`, join(m.dir, at)], { encoding: 'utf8', env }));
    } finally {
      m.umount();
    }
    for (const f of FLAGS) {
      for (const at of ['', 'live']) {
        const r = spawnSync('sh', ['-c', `node "$0" subvolume list ${f} "$1" "$2"`, BIN, image, `/${at}`], { encoding: 'utf8', env });
        expect([r.status, r.stderr], `${f} ${at}`).toEqual([0, '']);
        expect(r.stdout, `subvolume list ${f} /${at}`).toBe(kernel.get(`${f}|${at}`));
      }
    }
    // what is compared holds what the options are about
    expect(kernel.get('|live')).toMatch(/^ID 257 gen \d+ top level 256 path nested$/m);
    expect(kernel.get('-a|')).toMatch(/path <FS_TREE>\/live\/d\/deep$/m);
    expect(kernel.get('-s|')).toMatch(/otime \d{4}-\d\d-\d\d \d\d:\d\d:\d\d path live\/nested-snap$/m);
    expect(kernel.get('-d|')).toMatch(/^ID \d+ gen \d+ top level 0 path DELETED\n$/);
    expect(kernel.get('|')).not.toMatch(/DELETED|gone/);
    expect(kernel.get('-u -q -R|')).toMatch(/received_uuid 7d20c374-3235-ca4c-ba67-841676a50c81 uuid \S+ +path live\/d\/sample$/m);
  });

  it('without them (or with -r alone), its own line: progs\' -g -c -u -q -R with transids and ro/rw', () => {
    const r = spawnSync('node', [BIN, 'subvolume', 'list', '-r', image], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/^ID 259 gen \d+ cgen \d+ top level 5 parent_uuid \S+ +received_uuid - +uuid \S+ +ctransid \d+ stransid 0 rtransid 0 ro path base$/m);
    expect(r.stdout).not.toMatch(/path rw$/m);
  });

  it('bad option values are usage errors', () => {
    for (const args of [['-G', 'x'], ['--sort', 'size']]) {
      const r = spawnSync('node', [BIN, 'subvolume', 'list', ...args, image], { encoding: 'utf8' });
      expect(r.status, args.join(' ')).toBe(2);
    }
  });
});
