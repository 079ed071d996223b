import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BTRFS_COMPRESS_ZSTD } from '../src/compress/index.js';
import type { ReceiveError } from '../src/errors.js';
import { MemoryDevice } from '../src/image/device.js';
import { BtrfsImage, fromBlockDevice } from '../src/image/read/index.js';
import { imageTreeSource } from '../src/image/read/tree-source.js';
import { createFilesystem } from '../src/image/write/create.js';
import { formatManifest } from '../src/manifest/format.js';
import { receiveStreams, type ReceiveOptions, type ReceiveSummary } from '../src/receive/index.js';
import * as C from '../src/stream/constants.js';
import { b, encodeAll, uuid } from './helpers/craft.js';
import { STREAMS_DIR, storedManifest } from './helpers/streams.js';

/** Receive into a memory image and return the manifest of a subvolume read back by the image reader. */
async function receiveAndList(streams: string[], opts: ReceiveOptions = {}) {
  const dev = new MemoryDevice(256n << 20n);
  const fs = createFilesystem(dev, { growable: true });
  let last: ReceiveSummary | undefined;
  for (const s of streams) last = await receiveStreams([readFileSync(join(STREAMS_DIR, s))], fs, opts);
  const img = await BtrfsImage.open(fromBlockDevice(dev));
  const lines: string[] = [];
  for await (const l of formatManifest(imageTreeSource(img, await img.resolve(last!.subvolumes.at(-1)!.name)))) lines.push(l);
  return { summary: last!, lines };
}


describe('receive options change how data is stored, never what the files hold', () => {
  it('--force-decompress: no extent passes through, the tree is the same', async () => {
    const r = await receiveAndList(['zstd-v2.stream'], { forceDecompress: true });
    expect(r.summary.plan.byAction['pass-through'].extents).toBe(0);
    expect(r.summary.plan.byReason['force-decompress']?.extents).toBe(r.summary.plan.encodedWrites.extents);
    expect(r.summary.extents.compressed).toBe(0);
    expect(r.lines).toEqual(storedManifest('zstd-v2.manifest'));
  });

  it('--compress zstd on a protocol-1 stream: plain writes become compressed extents, same tree', async () => {
    const r = await receiveAndList(['full-v1.stream'], { compress: { type: BTRFS_COMPRESS_ZSTD, level: 3 } });
    expect(r.summary.extents.compressed).toBeGreaterThan(0);
    expect(r.lines).toEqual(storedManifest('full-v1.manifest'));
  });

  it('--force-decompress with --compress (lzo stream recompressed as zstd) counts recompressions', async () => {
    const r = await receiveAndList(['lzo-v2.stream'], { forceDecompress: true, compress: { type: BTRFS_COMPRESS_ZSTD } });
    expect(r.summary.plan.byAction.recompress.extents).toBe(r.summary.plan.encodedWrites.extents);
    expect(r.lines).toEqual(storedManifest('lzo-v2.manifest'));
  });

  it('--check-extents decodes every passed-through extent and still passes them through', async () => {
    const r = await receiveAndList(['lzo-v2.stream'], { checkExtents: true });
    expect(r.summary.plan.byAction['pass-through'].extents).toBe(r.summary.plan.encodedWrites.extents);
    expect(r.lines).toEqual(storedManifest('lzo-v2.manifest'));
  });

  it('-e stops after the first END; multi-subvolume input otherwise gives both', async () => {
    const one = await receiveAndList(['multi-v1.stream'], { stopAfterFirstEnd: true });
    expect(one.summary.subvolumes.map((s) => s.name)).toEqual(['m1']);
    const both = await receiveAndList(['multi-v1.stream']);
    expect(both.summary.subvolumes.map((s) => s.name)).toEqual(['m1', 'm2']);
    expect(both.lines).toEqual(storedManifest('multi-v1.m2.manifest'));
  });
});

describe('refusals name the command and leave the model uncommitted', () => {
  const run = async (cmds: Parameters<typeof encodeAll>[1], version = 2) => {
    const dev = new MemoryDevice(256n << 20n);
    const fs = createFilesystem(dev, { growable: true });
    const gen = fs.generation;
    const err = await receiveStreams([encodeAll(version, cmds)], fs).then(() => undefined, (e: unknown) => e);
    return { err: err as ReceiveError, committed: fs.generation !== gen };
  };
  const SUB = { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('v'), uuid: uuid(3), ctransid: 1n } as const;

  it('an unknown command id is refused (dump reports it, receive cannot apply it)', async () => {
    const r = await run([SUB, { cmd: 99, unknown: true, payload: new Uint8Array(0) }, { cmd: C.BTRFS_SEND_C_END }]);
    expect(r.err.code).toBe('UNKNOWN_COMMAND');
    expect(r.err.commandIndex).toBe(1);
    expect(r.committed).toBe(false);
  });

  it('ENABLE_VERITY is refused, never ignored', async () => {
    const r = await run([SUB, { cmd: C.BTRFS_SEND_C_MKFILE, path: b('f'), ino: 257n },
      { cmd: C.BTRFS_SEND_C_ENABLE_VERITY, path: b('f'), algorithm: 1, blockSize: 4096, salt: b(''), sig: b('') }, { cmd: C.BTRFS_SEND_C_END }], 3);
    expect(r.err.code).toBe('VERITY_UNSUPPORTED');
    expect(r.err.command).toBe('BTRFS_SEND_C_ENABLE_VERITY');
    expect(r.err.path).toBe('f');
    expect(r.committed).toBe(false);
  });

  it('a snapshot whose parent is not in the image names the UUID', async () => {
    const r = await run([{ cmd: C.BTRFS_SEND_C_SNAPSHOT, path: b('s'), uuid: uuid(4), ctransid: 2n, cloneUuid: uuid(5), cloneCtransid: 1n }, { cmd: C.BTRFS_SEND_C_END }]);
    expect(r.err.code).toBe('PARENT_NOT_FOUND');
    expect(r.err.message).toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/);
  });
});

describe('owner changes', () => {
  it('CHOWN with -1 (0xffffffff) leaves that id unchanged, as lchown(2) does', async () => {
    const dev = new MemoryDevice(256n << 20n);
    const fs = createFilesystem(dev, { growable: true });
    await receiveStreams([encodeAll(1, [
      { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('v'), uuid: uuid(7), ctransid: 1n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('f'), ino: 257n },
      { cmd: C.BTRFS_SEND_C_CHOWN, path: b('f'), uid: 1000n, gid: 1000n },
      { cmd: C.BTRFS_SEND_C_CHOWN, path: b('f'), uid: 0xffffffffn, gid: 5n },
      { cmd: C.BTRFS_SEND_C_END },
    ])], fs);
    const img = await BtrfsImage.open(fromBlockDevice(dev));
    const st = await img.stat(await img.resolve('v/f'));
    expect([st.uid, st.gid]).toEqual([1000, 5]);
  });
});

describe('receive CLI: --json summary and --dest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-recv-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cli = (...args: string[]) => spawnSync('node', [join(__dirname, '..', 'bin', 'btrfs-ts.js'), ...args], { encoding: 'utf8' });

  it('--json prints subvolumes and plan totals; --dest must be a writable directory of the image', () => {
    const img = join(dir, 'a.img');
    const r = cli('receive', '--json', '-f', join(STREAMS_DIR, 'sample.stream'), img);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.subvolumes[0].name).toBe('sample');
    expect(j.subvolumes[0].receivedUuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(j.plan.encodedWrites.extents).toBeGreaterThan(0);
    const missing = cli('receive', '-q', '--dest', 'nowhere', '-f', join(STREAMS_DIR, 'zstd-v2.stream'), img);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/\[DEST_NOT_FOUND\]/);
    const ro = cli('receive', '-q', '--dest', 'sample', '-f', join(STREAMS_DIR, 'zstd-v2.stream'), img);
    expect(ro.status).toBe(1);
    expect(ro.stderr).toMatch(/read-only subvolume.*\[DEST_READONLY\]/);
    // a plain directory of the image (made here by mkfs --rootdir) takes received subvolumes
    mkdirSync(join(dir, 'root', 'backups', 'daily'), { recursive: true });
    const img2 = join(dir, 'b.img');
    expect(cli('mkfs', '-q', '-r', join(dir, 'root'), img2).status).toBe(0);
    const into = cli('receive', '-q', '--dest', 'backups/daily', '-f', join(STREAMS_DIR, 'zstd-v2.stream'), img2);
    expect(into.stderr).toBe('');
    expect(into.status).toBe(0);
    const ls = cli('ls', img2, 'backups/daily/zstd');
    expect(ls.status).toBe(0);
    expect(ls.stdout).toMatch(/big\.log/);
  });
});
