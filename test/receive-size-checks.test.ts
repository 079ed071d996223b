import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as S from '../src/image/structs.js';
import { editLeaf, withImage } from './helpers/image-mutate.js';
import { hasTool, skipReason } from './helpers/oracle.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * A receive refuses, before changing anything, a directory it would change whose i_size does not add up
 * to its entries: the --dest directory and the parent subvolume's directories an incremental touches
 * (the top directory is covered by test/image-damaged.test.ts), and a file whose nbytes does not add up to
 * its extents (src/image/write/nbytes-check.ts). One line names the inode and the path; the image stays
 * as it was (byte for byte, or at its last commit for a refusal in mid-stream).
 */

const CLI = join(__dirname, '..', 'bin', 'btrfs-ts.js');
const HAVE_DIST = existsSync(join(__dirname, '..', 'dist', 'cli', 'main.js'));
const work = mkdtempSync('/tmp/btrfs-ts-size-checks-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cli(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}
const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

/** What a commit decides: the superblocks and what the image holds. */
function committed(img: string): { supers: string; manifest: string } {
  const b = readFileSync(img);
  const supers = createHash('sha256').update(b.subarray(0x10000, 0x11000)).update(b.subarray(0x4000000, 0x4001000)).digest('hex');
  const m = spawnSync(process.execPath, [CLI, 'manifest', '--nlink', img], { encoding: 'latin1' });
  return { supers, manifest: m.stdout };
}

/** Adds `delta` to the i_size (or, with `field` 'nbytes', the nbytes) of the inode at `path` (resolved in the image). */
async function growDirSize(img: string, path: string, delta: bigint, field: 'size' | 'nbytes' = 'size'): Promise<{ root: bigint; ino: bigint }> {
  const loc = await withImage(img, (i) => i.resolve(path));
  const key = { objectid: loc.ino, type: S.BTRFS_INODE_ITEM_KEY, offset: 0n };
  await editLeaf(img, loc.root, key, (items) => {
    const it = items.find((x) => S.compareKeys(x.key, key) === 0)!;
    const inode = S.decodeInodeItem(it.data);
    inode[field] += delta;
    it.data = S.encodeInodeItem(inode);
    return items;
  });
  return loc;
}

/**
 * full-v1 received into NAME.img, the parent an incremental test damages; a copy of it takes incr-v1 as
 * it is (the control: the stream itself is fine, only the damage makes the receive fail).
 */
function parentWithControl(name: string): string {
  const img = join(work, `${name}.img`);
  expect(cli(['receive', '-q', '-f', join(STREAMS_DIR, 'full-v1.stream'), img]).status).toBe(0);
  const control = join(work, `${name}-ok.img`);
  spawnSync('cp', [img, control]);
  expect(cli(['receive', '-q', '-f', join(STREAMS_DIR, 'incr-v1.stream'), control]).status).toBe(0);
  return img;
}

describe('receive refuses directories whose size and files whose nbytes do not add up, before changing them', () => {
  if (!HAVE_DIST) {
    it('needs a build', () => skipReason('receive-size-checks', 'run `npx tsc -p .` first (bin/btrfs-ts.js needs dist/)'));
    return;
  }

  it('--dest: the directory the subvolume goes into', async () => {
    const tree = join(work, 'tree');
    mkdirSync(join(tree, 'inbox'), { recursive: true });
    writeFileSync(join(tree, 'inbox', 'x'), 'x');
    const img = join(work, 'dest.img');
    expect(cli(['mkfs', '-r', tree, img]).status).toBe(0);
    spawnSync('cp', [img, join(work, 'ok.img')]); // the control: the same receive into the undamaged image works
    expect(cli(['receive', '-q', '--dest', 'inbox', '-f', join(STREAMS_DIR, 'sample.stream'), join(work, 'ok.img')]).status).toBe(0);

    const loc = await growDirSize(img, 'inbox', 4n);
    const before = sha(img);
    const r = cli(['receive', '-q', '--dest', 'inbox', '-f', join(STREAMS_DIR, 'sample.stream'), img]);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`directory --dest "inbox", where the subvolume is created (inode ${loc.ino} of subvolume ${loc.root}) has i_size 6, its entries add up to 2`);
    expect(lines[0]).toMatch(/\[IMAGE_BAD_INODE\]$/);
    expect(sha(img)).toBe(before);
  });

  it('an incremental: a directory of the parent that a command adds a name to or takes one from', async () => {
    const img = parentWithControl('incr');

    // incr-v1 unlinks links/hl-b after a clone made it write file data to free space: like every failure
    // in mid-stream, the refusal leaves the last commit (superblock, trees, manifest) as it was; the data
    // blocks stay unreferenced in free space
    const loc = await growDirSize(img, 'full/links', 2n);
    const before = committed(img);
    const r = cli(['receive', '-q', '-f', join(STREAMS_DIR, 'incr-v1.stream'), img]);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`path "links/hl-b": cannot modify this image: directory "links" \\(inode ${loc.ino} of subvolume \\d+\\) has i_size 34, its entries add up to 32 \\(btrfs check would reject the result\\) \\[IMAGE_BAD_INODE\\]$`));
    expect(committed(img)).toEqual(before);
    // the check itself is right: the damage is what btrfs check reports
    if (!hasTool('btrfs')) return skipReason('receive-size-checks btrfs check', 'btrfs-progs not installed');
    const check = spawnSync('btrfs', ['check', '--readonly', img], { encoding: 'utf8' });
    expect(check.status).not.toBe(0);
    expect(check.stdout + check.stderr).toMatch(new RegExp(`root 256 inode ${loc.ino} errors 200, dir isize wrong`));
  });

  it('an incremental: a file of the parent whose nbytes does not add up to its extents, before its first change', async () => {
    const img = parentWithControl('nbytes');

    // incr-v1 writes into random.bin (and clones into it): nbytes moves by deltas from a wrong start
    const loc = await growDirSize(img, 'full/random.bin', 4096n, 'nbytes');
    const before = committed(img);
    const r = cli(['receive', '-q', '-f', join(STREAMS_DIR, 'incr-v1.stream'), img]);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`random\\.bin.*cannot modify this image: file inode ${loc.ino} of subvolume \\d+ has nbytes (\\d+), its extents add up to (\\d+) \\(btrfs check would reject the result\\) \\[IMAGE_BAD_INODE\\]$`));
    const [, nbytes, sum] = /has nbytes (\d+), its extents add up to (\d+)/.exec(lines[0]!)!;
    expect(BigInt(nbytes!) - BigInt(sum!)).toBe(4096n);
    expect(committed(img)).toEqual(before);
    if (!hasTool('btrfs')) return skipReason('receive-size-checks btrfs check', 'btrfs-progs not installed');
    const check = spawnSync('btrfs', ['check', '--readonly', img], { encoding: 'utf8' });
    expect(check.status).not.toBe(0);
    expect(check.stdout + check.stderr).toMatch(new RegExp(`root 256 inode ${loc.ino} errors 400, nbytes wrong`));
  });
});
