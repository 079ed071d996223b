import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageError, SendError } from '../src/errors.js';
import { BtrfsImage } from '../src/image/read/index.js';
import type { ImageSource } from '../src/image/read/source.js';
import { openImageFile, type FileImageSource } from '../src/io/image-read-file.js';
import { sendSubvolume } from '../src/send/index.js';
import { verifyStream } from '../src/tools/verify.js';
import { btrfsCheck } from './image-write-helpers.js';
import { canUseKernel, makeImage, sh, withMount } from './image-read-fixtures.js';
import { CLI } from './helpers/image-harness.js';

/**
 * An image of a user's daily snapshots: a subvolume `data` and SNAPS read-only snapshots of it in `snaps/`
 * (the kernel made them), a nested subvolume, a snapshot of a writable snapshot (a cousin of the others).
 * A path names one subvolume among them through a few lookups, as the kernel resolves it — not by listing
 * every subvolume (each send did that three times, each receive's open decoded every root item three
 * times: 0.36 s and 112 MB for a 613-byte incremental send on 1,000 snapshots, against 0.06 s and 47 MB).
 */

const SNAPS = 1000;
const why = canUseKernel();
if (why) console.warn(`subvolumes-many: skipping kernel tests: ${why}`);

let dir = '';
let img = '';
let src: FileImageSource | undefined;

/** The image opened on a source that counts its reads. */
async function counted(): Promise<{ image: BtrfsImage; reads: () => number }> {
  let n = 0;
  const s: ImageSource = { ...src!, read: (offset, len, into) => { n++; return src!.read(offset, len, into); } };
  const image = await BtrfsImage.open(s);
  const base = n;
  return { image, reads: () => n - base };
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

beforeAll(async () => {
  if (why) return;
  dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-many-'));
  img = join(dir, 'days.img');
  makeImage(img, '1G');
  await withMount(img, dir, 'rw', async (mnt) => {
    sh(`set -e; cd "$M"; btrfs subvolume create -q data >/dev/null 2>&1 || btrfs subvolume create data >/dev/null
      btrfs subvolume create data/inner >/dev/null; echo inner > data/inner/f; mkdir -p snaps data/d
      for i in $(seq 1 $N); do echo "day $i" >> data/d/log; [ $((i % 50)) = 0 ] && head -c 20000 /dev/urandom > data/d/r$i
        btrfs subvolume snapshot -r data snaps/day$i >/dev/null; done
      btrfs subvolume snapshot data work >/dev/null; echo w > work/w; btrfs subvolume snapshot -r work work.ro >/dev/null
      btrfs subvolume create other >/dev/null; echo o > other/o; btrfs subvolume snapshot -r other other.ro >/dev/null`, { M: mnt, N: String(SNAPS) });
  });
  src = await openImageFile(img);
}, 180_000);

afterAll(async () => {
  await src?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(why !== null)(`an image of ${SNAPS} daily snapshots`, () => {
  it('every listed subvolume is found at its path, with the same identity, by lookups', async () => {
    const { image } = await counted();
    const all = await image.listSubvolumes();
    expect(all.length).toBe(SNAPS + 7); // top level, data, data/inner, the days, work, work.ro, other, other.ro
    for (const s of all) {
      const got = await image.subvolumeByPath(s.path);
      expect({ ...got, item: undefined }).toEqual({ ...s, item: undefined });
    }
    expect((await image.subvolumeByPath('/snaps/day7/')).id).toBe(all.find((s) => s.path === 'snaps/day7')!.id);
  }, 60_000);

  it('what is not a subvolume is refused as before: missing, a directory, a file, a snapshot\'s placeholder of a nested one', async () => {
    const { image } = await counted();
    // dots as a shell takes them: './snaps/day1' is what `btrfs send ./snaps/day1` names in the mount
    for (const [p, want] of [['./snaps/./day1', 'snaps/day1'], ['snaps/../data', 'data'], ['../../snaps/day2/.', 'snaps/day2']]) {
      expect((await image.subvolumeByPath(p!)).path, p).toBe(want);
    }
    for (const p of ['snaps/nope', 'snaps', 'data/d', 'data/d/log', 'snaps/day1/inner', 'nope/day1', 'snaps/day1/..']) {
      const e = await image.subvolumeByPath(p).catch((x: unknown) => x);
      expect(e, p).toBeInstanceOf(ImageError);
      expect((e as ImageError).code, p).toBe('IMAGE_NO_SUBVOLUME');
    }
  });

  it('finding one subvolume reads a few blocks, listing them all reads every leaf of the root tree', async () => {
    const byPath = await counted();
    await byPath.image.subvolumeByPath(`snaps/day${SNAPS - 1}`);
    const listing = await counted();
    await listing.image.listSubvolumes();
    expect(byPath.reads()).toBeLessThanOrEqual(10);
    expect(listing.reads()).toBeGreaterThan(3 * byPath.reads());
  });

  it('an incremental send between two days reads only what the change needs, and its stream verifies', async () => {
    const { image, reads } = await counted();
    const stream = await collect(sendSubvolume(image, `snaps/day${SNAPS}`, { parent: `snaps/day${SNAPS - 1}` }));
    const listing = await counted();
    await listing.image.listSubvolumes();
    expect(reads()).toBeLessThan(listing.reads());
    expect((await verifyStream([stream])).ok).toBe(true);
  });

  it('a cousin (a read-only snapshot of a writable snapshot) is a parent, an unrelated subvolume is not', async () => {
    const { image } = await counted();
    const cousin = await collect(sendSubvolume(image, 'work.ro', { parent: 'snaps/day1' }));
    expect((await verifyStream([cousin])).ok).toBe(true);
    const e = await collect(sendSubvolume(image, 'other.ro', { parent: 'snaps/day1' })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SendError);
    expect((e as SendError).code).toBe('SEND_UNRELATED_PARENT');
  });

  it('receive into it: a full and an incremental stream land next to the snapshots, btrfs check is clean', async () => {
    const target = join(dir, 'target.img');
    sh('cp --sparse=always "$A" "$B"', { A: img, B: target });
    await withMount(target, dir, 'rw', async (mnt) => { sh('mkdir "$M/recv"', { M: mnt }); });
    const full = join(dir, 'full.stream');
    const incr = join(dir, 'incr.stream');
    await withMount(img, dir, 'ro', async (mnt) => {
      sh('btrfs send -q -f "$F" "$M/snaps/day1" && btrfs send -q -p "$M/snaps/day1" -f "$I" "$M/snaps/day2"', { M: mnt, F: full, I: incr });
    });
    for (const s of [full, incr]) {
      const r = spawnSync(process.execPath, [CLI, 'receive', '-q', '--dest', 'recv', '-f', s, target], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    }
    const check = btrfsCheck(target);
    expect(check.status, check.output).toBe(0);
    const got = await withMount(target, dir, 'ro', async (mnt) => sh('cat "$M/recv/day2/d/log" && btrfs property get "$M/recv/day2" ro', { M: mnt }));
    expect(got).toBe('day 1\nday 2\nro=true\n');
  }, 60_000);
});
