import { tmpdir } from 'node:os';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BTRFS_COMPRESS_LZO, BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_ZSTD, type BtrfsCompressType } from '../src/compress/index.js';
import { extractStreams } from '../src/extract/stream.js';
import { dirTreeSource } from '../src/dirtree/source.js';
import { diffManifests, renderDiff } from '../src/manifest/compare.js';
import { formatManifest } from '../src/manifest/format.js';
import * as C from '../src/stream/constants.js';
import { parseStream } from '../src/stream/parser.js';
import type { SendCommand, StreamItem } from '../src/stream/types.js';
import { writeStream } from '../src/stream/writer.js';
import { convertStream, V1_MAX_WRITE, type ConvertOptions } from '../src/tools/convert.js';
import { formatUuid, parseUuid } from '../src/tools/paths.js';
import { verifyStream } from '../src/tools/verify.js';
import { b, concat, encodeAll, uuid } from './helpers/craft.js';
import { hasTool, isRoot, progsDump, skipReason } from './helpers/oracle.js';
import { collect, STREAMS_DIR } from './helpers/streams.js';

/**
 * convert: the output must be a stream the kernel's receive accepts and that gives the same tree as the
 * original (stored kernel manifests). Checked three ways: our own structural rules (what a kernel of the
 * target protocol sends), `btrfs receive --dump`, and `btrfs receive` into a loop-mounted btrfs.
 */

const read = (f: string) => new Uint8Array(readFileSync(join(STREAMS_DIR, f)));
const manifestLines = (f: string) => readFileSync(join(STREAMS_DIR, f), 'latin1').split('\n').slice(0, -1);

async function convert(input: Uint8Array, opts: ConvertOptions): Promise<Uint8Array> {
  return concat(...(await collect(convertStream([input], opts))));
}

const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-convert-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;

async function manifestOf(dir: string): Promise<string[]> {
  return collect(formatManifest(dirTreeSource(dir)));
}

/** Protocol rules of the output, checked command by command. */
async function checkShape(bytes: Uint8Array, proto: number): Promise<StreamItem[]> {
  const items = await collect(parseStream([bytes]));
  for (const it of items) {
    if (it.kind === 'header') {
      expect(it.version).toBe(proto);
      continue;
    }
    const c = it.command;
    if (proto === 1) {
      expect(c.cmd).toBeLessThanOrEqual(C.BTRFS_SEND_C_UPDATE_EXTENT);
      if (c.cmd === C.BTRFS_SEND_C_WRITE) expect((c as { data: Uint8Array }).data.length).toBeLessThanOrEqual(V1_MAX_WRITE);
      if (c.cmd === C.BTRFS_SEND_C_UTIMES) expect('otime' in c && c.otime !== undefined).toBe(false);
    }
    if (c.cmd === C.BTRFS_SEND_C_ENCODED_WRITE) {
      const e = c as Extract<SendCommand, { cmd: 25 }>;
      // the kernel's encoded-write rules
      expect(e.fileOffset % 4096n).toBe(0n);
      expect(e.unencodedLen).toBeLessThanOrEqual(128n * 1024n);
      expect(e.unencodedLen % 4096n).toBe(0n);
      expect(BigInt(e.data.length)).toBeLessThan(e.unencodedLen);
      expect(Math.ceil(e.data.length / 4096) * 4096 + 4096).toBeLessThanOrEqual(Number(e.unencodedLen));
    }
  }
  expect((await verifyStream([bytes])).problems).toEqual([]);
  return items;
}

/** Same commands as `btrfs receive --dump` sees them (and it accepts the stream). */
function checkProgsDump(bytes: Uint8Array, items: StreamItem[]): void {
  const d = progsDump(bytes);
  expect(d.stderr).toBe('');
  expect(d.status).toBe(0);
  const lines = d.stdout.toString('latin1').split('\n').filter((l) => /^[a-z_]+ +\.\//.test(l));
  expect(lines.length).toBe(items.filter((i) => i.kind === 'command' && i.command.cmd !== C.BTRFS_SEND_C_END).length);
}

const CODECS: [string, BtrfsCompressType][] = [['zstd', BTRFS_COMPRESS_ZSTD], ['zlib', BTRFS_COMPRESS_ZLIB], ['lzo', BTRFS_COMPRESS_LZO]];
const haveProgs = hasTool('btrfs');

describe('converted streams give the original tree (extract + stored manifests)', () => {
  if (!isRoot()) {
    it('needs root', () => skipReason('tools-convert manifests', 'comparing owners/devices/trusted xattrs needs root'));
    return;
  }
  const cases: { name: string; chain: string[]; out: string; subvol: string; manifest: string; opts: ConvertOptions }[] = [
    ...['zlib', 'lzo', 'zstd'].map((c) => ({ name: `${c}-v2 -> v1`, chain: [], out: `${c}-v2.stream`, subvol: c, manifest: `${c}-v2.manifest`, opts: { proto: 1 as const } })),
    { name: 'full-v2 -> v1 (otime dropped)', chain: [], out: 'full-v2.stream', subvol: 'full', manifest: 'full-v2.manifest', opts: { proto: 1 } },
    { name: 'incr-zstd-v2 -> v1 on zstd-v2', chain: ['zstd-v2.stream'], out: 'incr-zstd-v2.stream', subvol: 'zstd-incr', manifest: 'incr-zstd-v2.manifest', opts: { proto: 1 } },
    ...CODECS.map(([c, type]) => ({ name: `full-v1 -> v2 ${c}`, chain: [], out: 'full-v1.stream', subvol: 'full', manifest: 'full-v1.manifest', opts: { compress: { type } } })),
    { name: 'incr-v1 -> v2 zstd:7 on full-v1', chain: ['full-v1.stream'], out: 'incr-v1.stream', subvol: 'incr', manifest: 'incr-v1.manifest', opts: { compress: { type: BTRFS_COMPRESS_ZSTD, level: 7 } } },
    { name: 'clones-v1 -> v2 zlib on its sources', chain: ['full-v1.stream', 'clone-src-v1.stream'], out: 'clones-v1.stream', subvol: 'clones', manifest: 'clones-v1.manifest', opts: { compress: { type: BTRFS_COMPRESS_ZLIB } } },
    { name: 'sample (v2 zstd) -> v1 renamed', chain: [], out: 'sample.stream', subvol: 'renamed', manifest: 'sample.manifest', opts: { proto: 1, subvolName: b('renamed') } },
  ];
  for (const k of cases) {
    it(k.name, async () => {
      const opts: ConvertOptions = { ...k.opts, proto: k.opts.proto ?? 2 };
      const out = await convert(read(k.out), opts);
      const items = await checkShape(out, opts.proto!);
      if (opts.compress) expect(items.some((i) => i.kind === 'command' && i.command.cmd === C.BTRFS_SEND_C_ENCODED_WRITE)).toBe(true);
      if (haveProgs) checkProgsDump(out, items);
      const dir = join(work, `x${n++}`);
      await extractStreams([...k.chain.map((f) => join(STREAMS_DIR, f)), { name: 'converted', chunks: [out] }], dir, { warn: () => {} });
      const diffs = diffManifests(manifestLines(k.manifest), await manifestOf(join(dir, k.subvol)));
      expect(diffs, renderDiff(diffs, k.manifest, k.subvol)).toEqual([]);
    });
  }

  it('re-parenting: the SNAPSHOT and the CLONEs from the old parent name the new uuid', async () => {
    const newParent = parseUuid('0123456789abcdef0123456789abcdef')!;
    const orig = await collect(parseStream([read('incr-v1.stream')]));
    const oldParent = (orig.find((i) => i.kind === 'command' && i.command.cmd === C.BTRFS_SEND_C_SNAPSHOT) as { command: { cloneUuid: Uint8Array } }).command.cloneUuid;
    const out = await collect(parseStream([await convert(read('incr-v1.stream'), { parentUuid: newParent })]));
    const uuids = (items: StreamItem[]) => items.flatMap((i) => (i.kind === 'command' && 'cloneUuid' in i.command ? [formatUuid(i.command.cloneUuid)] : []));
    const before = uuids(orig);
    expect(before).toContain(formatUuid(oldParent));
    expect(uuids(out)).toEqual(before.map((u) => (u === formatUuid(oldParent) ? formatUuid(newParent) : u)));
    const dir = join(work, `x${n++}`);
    await extractStreams([join(STREAMS_DIR, 'full-v1.stream')], dir, { warn: () => {} });
    await expect(extractStreams([{ name: 'reparented', chunks: [concat(...(await collect(convertStream([read('incr-v1.stream')], { parentUuid: newParent }))))] }], dir, { warn: () => {} }))
      .rejects.toMatchObject({ code: 'EXTRACT_NO_PARENT_SUBVOL' });
  });

  it('refuses what has no exact translation', async () => {
    await expect(convert(read('full-v1.stream'), { parentUuid: uuid(1) })).rejects.toMatchObject({ code: 'CONVERT_NOT_INCREMENTAL' });
    await expect(convert(read('multi-v1.stream'), { subvolName: b('x') })).rejects.toMatchObject({ code: 'CONVERT_MULTI' });
    await expect(convert(read('full-v1.stream'), { subvolName: b('../x') })).rejects.toMatchObject({ code: 'CONVERT_BAD_NAME' });
    await expect(convert(read('full-v1.stream'), { proto: 1, compress: { type: BTRFS_COMPRESS_ZSTD } })).rejects.toMatchObject({ code: 'CONVERT_COMPRESS_V1' });
    // a punched hole in a file the stream did not create: its size (where the zeros stop) is unknown
    const s = encodeAll(2, [
      { cmd: C.BTRFS_SEND_C_SNAPSHOT, path: b('v'), uuid: uuid(2), ctransid: 2n, cloneUuid: uuid(1), cloneCtransid: 1n },
      { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('old'), mode: C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, fileOffset: 0n, size: 4096n },
      { cmd: C.BTRFS_SEND_C_END },
    ]);
    await expect(convert(s, { proto: 1 })).rejects.toMatchObject({ code: 'CONVERT_FALLOCATE' });
  });
});

/** A v2 stream with the commands this kernel never sends, ending with times so two receives compare. */
function fallocStream(): Uint8Array {
  const t = { sec: 1600000000n, nsec: 5 };
  const times = (p: string): SendCommand => ({ cmd: C.BTRFS_SEND_C_UTIMES, path: b(p), atime: t, mtime: t, ctime: t, otime: t });
  return encodeAll(2, [
    { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('fa'), uuid: uuid(77), ctransid: 1n },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: b('f'), ino: 257n },
    { cmd: C.BTRFS_SEND_C_WRITE, path: b('f'), fileOffset: 0n, data: new Uint8Array(100000).fill(0x41) },
    { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('f'), mode: C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, fileOffset: 4096n, size: 8192n },
    { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('f'), mode: C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, fileOffset: 90000n, size: 1n << 20n },
    { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('f'), mode: C.FALLOC_FL_KEEP_SIZE, fileOffset: 0n, size: 1n << 21n },
    { cmd: C.BTRFS_SEND_C_MKFILE, path: b('g'), ino: 258n },
    { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('g'), mode: 0, fileOffset: 0n, size: 70000n },
    { cmd: C.BTRFS_SEND_C_FILEATTR, path: b('g'), fileattr: 0n },
    times('f'), times('g'), times(''),
    { cmd: C.BTRFS_SEND_C_END },
  ]);
}

const loopWhy = !isRoot() ? 'not root' : !existsSync('/dev/loop-control') ? 'no loop devices'
  : !haveProgs || !hasTool('mkfs.btrfs', ['-V']) ? 'btrfs-progs missing' : null;

describe('kernel receive of converted streams (loop-mounted btrfs)', () => {
  if (loopWhy) {
    it('is skipped', () => skipReason('tools-convert kernel receive', loopWhy));
    return;
  }
  const img = join(work, 'fs.img');
  const mnt = join(work, 'mnt');
  let mounted = false;
  beforeAll(() => {
    mkdirSync(mnt);
    execFileSync('truncate', ['-s', '1G', img]);
    execFileSync('mkfs.btrfs', ['-q', '-f', img]);
    execFileSync('mount', ['-o', 'loop', img, mnt]);
    mounted = true;
  });
  afterAll(() => {
    if (mounted) execFileSync('umount', [mnt]);
  });

  const receive = (bytes: Uint8Array, name: string) => {
    const f = join(work, `${name}.stream`);
    writeFileSync(f, bytes);
    const r = spawnSync('btrfs', ['-q', 'receive', '-f', f, mnt]);
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
  };
  const expectTree = async (subvol: string, manifest: string) => {
    const diffs = diffManifests(manifestLines(manifest), await manifestOf(join(mnt, subvol)));
    expect(diffs, renderDiff(diffs, manifest, subvol)).toEqual([]);
  };
  const compsize = (subvol: string) => execFileSync('compsize', ['-x', join(mnt, subvol)]).toString();

  it('v2 compressed -> v1', async () => {
    receive(await convert(read('zstd-v2.stream'), { proto: 1 }), 'z1');
    await expectTree('zstd', 'zstd-v2.manifest');
    expect(compsize('zstd')).not.toMatch(/^zstd /m); // v1 carries no compressed extents
  });

  it('v1 -> v2 zstd, then an incremental -> v2 lzo on top; the kernel keeps the encoded extents', async () => {
    receive(await convert(read('full-v1.stream'), { proto: 2, compress: { type: BTRFS_COMPRESS_ZSTD } }), 'f2');
    await expectTree('full', 'full-v1.manifest');
    expect(compsize('full')).toMatch(/^zstd +\d+%/m);
    receive(await convert(read('incr-v1.stream'), { proto: 2, compress: { type: BTRFS_COMPRESS_LZO } }), 'i2');
    await expectTree('incr', 'incr-v1.manifest');
  });

  it('--parent-uuid: an incremental applied to a different received subvolume with the same content', async () => {
    // the same tree received under another uuid (btrfs receive finds SNAPSHOT parents and CLONE sources by
    // received uuid), then the original parent deleted: only the re-parented uuids can resolve now
    const altUuid = parseUuid('00112233445566778899aabbccddeeff')!;
    const alt = await collect(parseStream([await convert(read('full-v1.stream'), { subvolName: b('full-alt') })]));
    for (const i of alt) if (i.kind === 'command' && i.command.cmd === C.BTRFS_SEND_C_SUBVOL) (i.command as { uuid: Uint8Array }).uuid = altUuid;
    receive(concat(...(await collect(writeStream(alt)))), 'alt');
    execFileSync('btrfs', ['-q', 'subvolume', 'delete', join(mnt, 'full')]);
    receive(await convert(read('incr-v1.stream'), { parentUuid: altUuid, subvolName: b('incr2') }), 'i3');
    await expectTree('incr2', 'incr-v1.manifest');
    // without re-parenting the kernel no longer finds the parent
    const f = join(work, 'orig-incr.stream');
    writeFileSync(f, await convert(read('incr-v1.stream'), { subvolName: b('incr3') }));
    const r = spawnSync('btrfs', ['-q', 'receive', '-f', f, mnt]);
    expect(r.status).not.toBe(0);
    expect(r.stderr.toString()).toMatch(/cannot find parent subvolume/);
  });

  it('--subvol-name', async () => {
    receive(await convert(read('sample.stream'), { subvolName: b('sample-renamed'), proto: 1 }), 's1');
    await expectTree('sample-renamed', 'sample.manifest');
  });

  it('FALLOCATE/FILEATTR -> v1: the same tree as the kernel makes from the v2 original', async () => {
    const v2 = fallocStream();
    receive(v2, 'fa2');
    const want = await manifestOf(join(mnt, 'fa'));
    const v1 = await convert(v2, { proto: 1, subvolName: b('fa1') });
    const items = await checkShape(v1, 1);
    checkProgsDump(v1, items);
    receive(v1, 'fa1');
    const got = await manifestOf(join(mnt, 'fa1'));
    const diffs = diffManifests(want.map((l) => l.replace(/^fa\b/, 'fa1')), got);
    expect(diffs, renderDiff(diffs, 'kernel fa (v2)', 'kernel fa1 (v1)')).toEqual([]);
    expect(want.find((l) => l.startsWith('g '))).toContain('size=70000');
  });
});
