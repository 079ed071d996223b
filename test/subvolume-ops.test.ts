import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BtrfsImage, createSubvolumes, getDefaultSubvolume, getSubvolumeReadonly, openImageFile, setDefaultSubvolume, setSubvolumeReadonly,
  snapshotSubvolume, type SubvolumeInfo,
} from '../src/index.js';
import { openFilesystem } from '../src/image/write/open.js';
import { setSubvolReadonly } from '../src/image/write/subvol.js';
import { FileDevice } from '../src/io/image-file.js';
import { CLI } from './helpers/image-harness.js';
import { STREAMS_DIR } from './helpers/streams.js';
import { btrfsCheck, checkProblems, haveBtrfsProgs, tmpDir } from './image-write-helpers.js';

/**
 * The library side of subvolume snapshot / create / set-default and property ro, without a kernel: on an
 * image btrfs-ts received two streams into, read back with btrfs-ts's reader (and btrfs check where
 * btrfs-progs is installed). test/subvolume-snapshot.test.ts compares the same with the kernel's.
 */

let dir = '';
let img = '';
const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex');

async function subvols(): Promise<Map<string, SubvolumeInfo>> {
  const src = await openImageFile(img);
  try {
    const all = await (await BtrfsImage.open(src)).listSubvolumes();
    return new Map(all.map((s) => [s.path, s]));
  } finally {
    await src.close();
  }
}

function clean(): void {
  if (!haveBtrfsProgs) return;
  const c = btrfsCheck(img);
  expect(c.status, c.output).toBe(0);
  expect(checkProblems(c.output)).toEqual([]);
}

beforeAll(() => {
  dir = tmpDir('btrfs-ts-subvol-ops-');
  img = join(dir, 'r.img');
  for (const s of ['full-v1.stream', 'incr-v1.stream']) expect(cli(['receive', '-q', '-f', join(STREAMS_DIR, s), img]).status).toBe(0);
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('subvolume snapshot / create / default / property ro through the library', () => {
  it('create, then snapshots read-only and writable of a received subvolume', async () => {
    const made = await createSubvolumes(img, ['v', 'v/w']);
    expect(made.map((m) => m.path)).toEqual(['./v', 'v/w']);
    const ro = await snapshotSubvolume(img, 'full', 'v', { readonly: true });
    expect(ro.dest).toBe('v/full');
    const rw = await snapshotSubvolume(img, 'full', 'work');
    expect(rw.dest).toBe('./work');
    const s = await subvols();
    const full = s.get('full')!;
    expect(s.get('v/w')!.parent).toBe(s.get('v')!.id);
    const snap = s.get('v/full')!;
    expect(snap.readonly).toBe(true);
    expect(snap.snapshot).toBe(true);
    expect(hex(snap.parentUuid)).toBe(hex(full.uuid));
    expect(hex(snap.receivedUuid)).toBe(hex(full.receivedUuid));
    expect(snap.stransid).toBe(full.stransid);
    expect(snap.ctransid).toBe(full.ctransid);
    const work = s.get('work')!;
    expect(work.readonly).toBe(false);
    expect(hex(work.receivedUuid)).toBe('0'.repeat(32));
    expect(work.stransid).toBe(0n);
    expect(full.item.last_snapshot).toBe(work.otransid);
    for (const p of ['v/full', 'work']) expect(cli(['manifest', '--path', p, img]).stdout).toBe(cli(['manifest', '--path', 'full', img]).stdout);
    clean();
  });

  it('set-default by path and id; get-default', async () => {
    expect(await getDefaultSubvolume(img)).toBeUndefined();
    const id = await setDefaultSubvolume(img, 'v/w');
    expect((await getDefaultSubvolume(img))!.path).toBe('v/w');
    expect(await setDefaultSubvolume(img, 0n)).toBe(5n);
    expect(await getDefaultSubvolume(img)).toBeUndefined();
    expect(id).toBe((await subvols()).get('v/w')!.id);
    clean();
  });

  it('property ro: a received subvolume made writable only with force, its received uuid cleared', async () => {
    expect(await getSubvolumeReadonly(img, 'full')).toBe(true);
    await expect(setSubvolumeReadonly(img, 'full', false)).rejects.toThrow(/cannot flip ro->rw with received_uuid set/);
    expect(await setSubvolumeReadonly(img, 'full', true)).toEqual({ changed: false, clearedReceived: false });
    const before = (await subvols()).get('full')!;
    expect(await setSubvolumeReadonly(img, 'full', false, { force: true })).toEqual({ changed: true, clearedReceived: true, warning: undefined });
    const after = (await subvols()).get('full')!;
    expect(after.readonly).toBe(false);
    expect(hex(after.receivedUuid)).toBe('0'.repeat(32));
    expect(after.stransid).toBe(0n);
    expect(after.rtransid).toBeGreaterThan(before.rtransid);
    expect(after.ctransid).toBe(before.ctransid);
    expect(await getSubvolumeReadonly(img, 'full')).toBe(false);
    clean();
  });

  it('a read-write subvolume with a received uuid (as older btrfs-progs left one): made read-only with btrfs-progs\' warning', async () => {
    const s = (await subvols()).get('incr')!;
    expect(s.readonly).toBe(true);
    // the flag cleared by hand, the received uuid kept
    const dev = FileDevice.open(img);
    try {
      const fs = await openFilesystem(dev, { growable: false });
      setSubvolReadonly(fs, s.id, false);
      fs.commit();
    } finally {
      dev.close();
    }
    const rw = cli(['property', 'set', img, 'incr', 'ro', 'false']);
    expect(rw.status, rw.stderr).toBe(0);
    expect(rw.stderr).toBe('btrfs-ts: WARNING: read-write subvolume with received_uuid, this is bad\n');
    const ro = cli(['property', 'set', img, 'incr', 'ro', 'true']);
    expect(ro.status, ro.stderr).toBe(0);
    expect(ro.stderr).toBe('btrfs-ts: WARNING: read-write subvolume with received_uuid, this is bad\n');
    const after = (await subvols()).get('incr')!;
    expect(after.readonly).toBe(true);
    expect(hex(after.receivedUuid)).toBe(hex(s.receivedUuid));
    clean();
  });
});
