import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import * as C from '../src/stream/constants.js';
import type { SendCommand } from '../src/stream/types.js';
import { b, encodeAll, uuid } from './helpers/craft.js';
import { collect } from './helpers/streams.js';

/**
 * Paths the kernel's send cannot build: it joins every path in a PATH_MAX (4096) buffer with its NUL and
 * fails with ENAMETOOLONG (checked on this machine: a subvolume whose deepest path is 4095 bytes is sent,
 * one with a 4096-byte path fails `btrfs send` with -36, full and incremental). btrfs-ts's receive stores
 * deeper trees (the filesystem has no such limit), so its send meets them and must refuse them the same way.
 * And stream files made by send -f and convert -o are 0600, as `btrfs send -f` makes them.
 */
const BIN = join(__dirname, '..', 'bin', 'btrfs-ts.js');
const dir = (i: number, len = 255): string => `d${String(i).padStart(2, '0')}`.padEnd(len, '0');
const t0 = { sec: 1700000000n, nsec: 0 };

/** A subvolume `name` holding the directories `names` one inside the other, and an empty file `leaf` at the bottom when given. */
function deepStream(name: string, id: number, names: string[], leaf?: string): SendCommand[] {
  const cmds: SendCommand[] = [{ cmd: C.BTRFS_SEND_C_SUBVOL, path: b(name), uuid: uuid(id), ctransid: 5n }];
  let path = '';
  names.forEach((n, i) => {
    path = path ? `${path}/${n}` : n;
    cmds.push({ cmd: C.BTRFS_SEND_C_MKDIR, path: b(path), ino: BigInt(257 + i) });
  });
  if (leaf) cmds.push({ cmd: C.BTRFS_SEND_C_MKFILE, path: b(`${path}/${leaf}`), ino: 300n });
  cmds.push({ cmd: C.BTRFS_SEND_C_UTIMES, path: b(''), atime: t0, mtime: t0, ctime: t0 }, { cmd: C.BTRFS_SEND_C_END });
  return cmds;
}

const sixteen = Array.from({ length: 16 }, (_, i) => dir(i + 1));
/** 16 × 255 + 15 slashes: the deepest directory's path is 4095 bytes, the most the kernel sends. */
const atMax = deepStream('atmax', 1, sixteen);
/** 15 × 255 + 254 + 16 slashes + 'x': 4096 bytes. */
const overMax = deepStream('overmax', 2, [...sixteen.slice(0, 15), dir(16, 254)], 'x');
/** atmax with a file in its deepest directory (4097 bytes), as an incremental on atmax. */
const deeper: SendCommand[] = [
  { cmd: C.BTRFS_SEND_C_SNAPSHOT, path: b('deeper'), uuid: uuid(3), ctransid: 6n, cloneUuid: uuid(1), cloneCtransid: 5n },
  { cmd: C.BTRFS_SEND_C_MKFILE, path: b(`${sixteen.join('/')}/x`), ino: 300n },
  { cmd: C.BTRFS_SEND_C_END },
];

let work: string;
let image: lib.BtrfsImage;
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'btrfs-ts-pathmax-'));
  const streams = [encodeAll(1, atMax), encodeAll(1, overMax), encodeAll(1, deeper)];
  streams.forEach((s, i) => writeFileSync(join(work, `s${i}.stream`), s));
  const dev = new lib.MemoryDevice(128n << 20n);
  const fs = lib.createFilesystem(dev, { growable: true });
  for (const s of streams) await lib.receiveStreams((async function* () { yield s; })(), fs);
  image = await lib.BtrfsImage.open(lib.fromBlockDevice(dev));
  // the same image as a file, for the CLI
  for (let i = 0; i < 3; i++) {
    const r = spawnSync('node', [BIN, 'receive', '-q', '-f', join(work, `s${i}.stream`), join(work, 'img')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
  }
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const sendError = async (subvol: string, opts: lib.SendOptions): Promise<lib.BtrfsTsError> => {
  const err = await collect(lib.sendSubvolume(image, subvol, opts)).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(lib.BtrfsTsError);
  return err as lib.BtrfsTsError;
};

describe('a path of PATH_MAX bytes or more is refused, as the kernel refuses it', () => {
  it('4095 bytes: sent, and received again to the same depth', async () => {
    const stream = Buffer.concat(await collect(lib.sendSubvolume(image, 'atmax', {})));
    const dev = new lib.MemoryDevice(128n << 20n);
    await lib.receiveStreams((async function* () { yield stream; })(), lib.createFilesystem(dev, { growable: true }));
    const again = await lib.BtrfsImage.open(lib.fromBlockDevice(dev));
    const deepest = `atmax/${sixteen.join('/')}`;
    expect(deepest.length - 'atmax/'.length).toBe(4095);
    await expect(again.resolve(deepest)).resolves.toBeTruthy();
  });

  it('4096 bytes in a full send: SEND_PATH_TOO_LONG naming the directory inode and the length', async () => {
    const e = await sendError('overmax', {});
    expect(e.code).toBe('SEND_PATH_TOO_LONG');
    expect(e.message).toMatch(/entry of directory inode \d+ of subvolume \d+ is 4096 bytes .*PATH_MAX \(4096\)/);
  });

  it('4097 bytes in an incremental send (-p): refused the same way', async () => {
    const e = await sendError('deeper', { parent: 'atmax' });
    expect(e.code).toBe('SEND_PATH_TOO_LONG');
    expect(e.message).toMatch(/is 4097 bytes/);
  });

  it('the CLI: one line, status 1, no half-written -f file left', () => {
    const out = join(work, 'over.stream');
    const r = spawnSync('node', [BIN, 'send', '-q', '-f', out, join(work, 'img'), 'overmax'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^btrfs-ts: ERROR: the path of .* is 4096 bytes .*\[SEND_PATH_TOO_LONG\]$/m);
    expect(existsSync(out)).toBe(false);
  });
});

describe('stream files are their owner\'s alone (0600), as btrfs send -f makes them', () => {
  it('send -f and convert -o make 0600 files whatever the umask; an existing file keeps its mode', () => {
    const sent = join(work, 'atmax.stream');
    const r = spawnSync('sh', ['-c', `umask 022 && exec node "$0" send -q -f "$1" "$2" atmax`, BIN, sent, join(work, 'img')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(statSync(sent).mode & 0o777).toBe(0o600);
    const converted = join(work, 'converted.stream');
    const c = spawnSync('sh', ['-c', `umask 022 && exec node "$0" convert -f "$1" -o "$2" --proto 2`, BIN, sent, converted], { encoding: 'utf8' });
    expect(c.status).toBe(0);
    expect(statSync(converted).mode & 0o777).toBe(0o600);
    // a file the user made keeps the mode they gave it (O_TRUNC, as btrfs-progs opens it)
    chmodSync(sent, 0o640);
    expect(spawnSync('node', [BIN, 'send', '-q', '-f', sent, join(work, 'img'), 'atmax']).status).toBe(0);
    expect(statSync(sent).mode & 0o777).toBe(0o640);
  });
});
