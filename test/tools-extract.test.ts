import { tmpdir } from 'node:os';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BtrfsTsError, ReceiveError } from '../src/errors.js';
import { extractStreams } from '../src/extract/stream.js';
import { dirTreeSource } from '../src/dirtree/source.js';
import { diffManifests, renderDiff } from '../src/manifest/compare.js';
import { formatManifest } from '../src/manifest/format.js';
import * as C from '../src/stream/constants.js';
import { parseStream } from '../src/stream/parser.js';
import type { SendCommand } from '../src/stream/types.js';
import { writeStream } from '../src/stream/writer.js';
import { RECEIVED_INDEX_FILE } from '../src/tools/received-index.js';
import { b, concat, encodeAll, uuid } from './helpers/craft.js';
import { isRoot, skipReason } from './helpers/oracle.js';
import { reachableCli, type ReachableCli } from './helpers/reachable-cli.js';
import { collect, STREAMS_DIR } from './helpers/streams.js';

/**
 * extract-stream against the kernel: every captured stream (with its parent chain, as index.json gives
 * it) extracted into a plain directory on this machine's filesystem must give exactly the manifest the
 * kernel's own `btrfs receive` produced: modes, owners, ns mtimes, xattrs (all namespaces), hard links,
 * symlink targets, device numbers, file content.
 */

interface StreamInfo { name: string; file: string; parent: string | null; cloneSources: string[]; received: { subvolume: string; manifest: string }[] }
const index = JSON.parse(readFileSync(join(STREAMS_DIR, 'index.json'), 'utf8')) as { streams: StreamInfo[] };
const byName = new Map(index.streams.map((s) => [s.name, s]));

/** The streams to receive before `s`, oldest first: parents and clone sources, recursively. */
function chain(s: StreamInfo, seen = new Set<string>()): StreamInfo[] {
  const out: StreamInfo[] = [];
  for (const dep of [...(s.parent ? [s.parent] : []), ...s.cloneSources]) {
    if (seen.has(dep)) continue;
    seen.add(dep);
    const d = byName.get(dep)!;
    out.push(...chain(d, seen), d);
  }
  return out;
}

const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-extract-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(work, `t${n++}`);

async function manifestOf(dir: string): Promise<string[]> {
  const lines: string[] = [];
  for await (const l of formatManifest(dirTreeSource(dir))) lines.push(l);
  return lines;
}

const quiet = { warn: () => {} };

describe('extract-stream reproduces the kernel receive manifests', () => {
  if (!isRoot()) {
    it('needs root', () => skipReason('tools-extract manifests', 'owners, device nodes and trusted.* xattrs need root'));
    return;
  }
  for (const s of index.streams) {
    if (s.received.length === 0) continue; // nodata-v1: the kernel cannot receive it either (below)
    it(`${s.name}${s.parent ? ` on ${chain(s).map((x) => x.name).join(' + ')}` : ''}`, async () => {
      const dir = freshDir();
      const warnings: string[] = [];
      const files = [...chain(s), s].map((x) => join(STREAMS_DIR, x.file));
      const r = await extractStreams(files, dir, { warn: (m) => warnings.push(m) });
      expect(warnings).toEqual([]);
      expect(r.received.slice(-s.received.length)).toEqual(s.received.map((x) => x.subvolume));
      for (const rec of s.received) {
        const expected = readFileSync(join(STREAMS_DIR, rec.manifest), 'latin1').split('\n');
        expected.pop();
        const actual = await manifestOf(join(dir, rec.subvolume));
        const diffs = diffManifests(expected, actual);
        expect(diffs, renderDiff(diffs, rec.manifest, rec.subvolume)).toEqual([]);
      }
    });
  }

  it('incrementals can come in later runs: the parent is found through the index file', async () => {
    const dir = freshDir();
    await extractStreams([join(STREAMS_DIR, 'zstd-v2.stream')], dir, quiet);
    const idx = JSON.parse(readFileSync(join(dir, RECEIVED_INDEX_FILE), 'utf8')) as { subvolumes: { name: string; uuid: string }[] };
    expect(idx.subvolumes.map((x) => x.name)).toEqual(['zstd']);
    const dump = readFileSync(join(STREAMS_DIR, 'zstd-v2.dump'), 'latin1');
    expect(dump).toContain(`uuid=${idx.subvolumes[0]!.uuid}`);
    await extractStreams([join(STREAMS_DIR, 'incr-zstd-v2.stream')], dir, quiet);
    const expected = readFileSync(join(STREAMS_DIR, 'incr-zstd-v2.manifest'), 'latin1').split('\n');
    expected.pop();
    expect(diffManifests(expected, await manifestOf(join(dir, 'zstd-incr')))).toEqual([]);
  });

  it('an incremental without its parent is refused', async () => {
    const dir = freshDir();
    await expect(extractStreams([join(STREAMS_DIR, 'incr-v1.stream')], dir, quiet)).rejects.toMatchObject({ code: 'EXTRACT_NO_PARENT_SUBVOL' });
  });

  it('a stream whose subvolume already exists is refused', async () => {
    const dir = freshDir();
    await extractStreams([join(STREAMS_DIR, 'sample.stream')], dir, quiet);
    await expect(extractStreams([join(STREAMS_DIR, 'sample.stream')], dir, quiet)).rejects.toMatchObject({ code: 'EXTRACT_EXISTS' });
  });

  it('nodata-v1 fails at its first CLONE of a file without data, as the kernel receive does', async () => {
    const err = await extractStreams([join(STREAMS_DIR, 'nodata-v1.stream')], freshDir(), quiet).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReceiveError);
    expect((err as ReceiveError).command).toBe('BTRFS_SEND_C_CLONE');
    expect((err as ReceiveError).offset).toBeGreaterThan(0);
  });
});

/** A one-subvolume stream `v` holding `cmds`. */
function crafted(cmds: SendCommand[], version = 1): Uint8Array {
  return encodeAll(version, [{ cmd: C.BTRFS_SEND_C_SUBVOL, path: b('vol'), uuid: uuid(9), ctransid: 1n }, ...cmds, { cmd: C.BTRFS_SEND_C_END }]);
}

async function extractBytes(bytes: Uint8Array, dir: string): Promise<unknown> {
  return extractStreams([{ name: 'crafted', chunks: [bytes] }], dir, quiet).then(() => undefined, (e: unknown) => e);
}

describe('hostile streams cannot write outside the target', () => {
  const outside = (dir: string) => join(dir, '..', `${dir.split('/').pop()}-outside`);
  const cases: [string, SendCommand[]][] = [
    ['a ".." component', [{ cmd: C.BTRFS_SEND_C_MKFILE, path: b('../escape'), ino: 257n }]],
    ['".." in the middle', [{ cmd: C.BTRFS_SEND_C_MKDIR, path: b('d'), ino: 257n }, { cmd: C.BTRFS_SEND_C_MKFILE, path: b('d/../../escape'), ino: 258n }]],
    ['an absolute path', [{ cmd: C.BTRFS_SEND_C_MKFILE, path: b('/tmp/escape'), ino: 257n }]],
    ['an empty component', [{ cmd: C.BTRFS_SEND_C_MKFILE, path: b('a//b'), ino: 257n }]],
    ['a NUL byte', [{ cmd: C.BTRFS_SEND_C_MKFILE, path: b([0x61, 0, 0x62]), ino: 257n }]],
    ['a rename target with ".."', [{ cmd: C.BTRFS_SEND_C_MKFILE, path: b('f'), ino: 257n }, { cmd: C.BTRFS_SEND_C_RENAME, path: b('f'), pathTo: b('../escape') }]],
    ['a link onto ".."', [{ cmd: C.BTRFS_SEND_C_MKFILE, path: b('f'), ino: 257n }, { cmd: C.BTRFS_SEND_C_LINK, path: b('../escape'), pathLink: b('f') }]],
    ['a subvolume named ".."', []],
  ];
  for (const [what, cmds] of cases) {
    it(`refuses ${what}`, async () => {
      const dir = freshDir();
      const bytes = what.startsWith('a subvolume')
        ? encodeAll(1, [{ cmd: C.BTRFS_SEND_C_SUBVOL, path: b('..'), uuid: uuid(3), ctransid: 1n }, { cmd: C.BTRFS_SEND_C_END }])
        : crafted(cmds);
      const err = await extractBytes(bytes, dir);
      expect(err).toBeInstanceOf(BtrfsTsError);
      expect((err as BtrfsTsError).code).toBe('EXTRACT_UNSAFE_PATH');
      expect(existsSync(join(dir, '..', 'escape'))).toBe(false);
      expect(existsSync('/tmp/escape')).toBe(false);
      expect(existsSync(outside(dir))).toBe(false);
    });
  }

  it('does not follow a symlink the stream planted in a parent component', async () => {
    const dir = freshDir();
    const target = join(work, `victim-${n}`);
    mkdirSync(target);
    const err = await extractBytes(crafted([
      { cmd: C.BTRFS_SEND_C_SYMLINK, path: b('link'), ino: 257n, pathLink: b(target) },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('link/pwned'), ino: 258n },
      { cmd: C.BTRFS_SEND_C_WRITE, path: b('link/pwned'), fileOffset: 0n, data: b('x') },
    ]), dir);
    expect((err as BtrfsTsError).code).toBe('EXTRACT_UNSAFE_PATH');
    expect((err as BtrfsTsError).message).toContain('symlink');
    expect(readdirSync(target)).toEqual([]);
  });

  it('does not follow a symlink at the leaf (write, truncate, chmod, utimes, xattr target)', async () => {
    const dir = freshDir();
    const victim = join(work, `victim-file-${n}`);
    writeFileSync(victim, 'keep');
    const before = readFileSync(victim, 'utf8');
    const err = await extractBytes(crafted([
      { cmd: C.BTRFS_SEND_C_SYMLINK, path: b('f'), ino: 257n, pathLink: b(victim) },
      { cmd: C.BTRFS_SEND_C_WRITE, path: b('f'), fileOffset: 0n, data: b('pwned') },
    ]), dir);
    expect(err).toBeInstanceOf(BtrfsTsError);
    expect((err as BtrfsTsError).code).toBe('EXTRACT_FS'); // ELOOP from O_NOFOLLOW
    expect(readFileSync(victim, 'utf8')).toBe(before);
  });

  it('refuses a pre-existing symlink in the target used as a subvolume name', async () => {
    const dir = freshDir();
    mkdirSync(dir);
    const target = join(work, `victim-dir-${n}`);
    mkdirSync(target);
    symlinkSync(target, join(dir, 'vol'));
    const err = await extractBytes(crafted([{ cmd: C.BTRFS_SEND_C_MKFILE, path: b('x'), ino: 257n }]), dir);
    expect((err as BtrfsTsError).code).toBe('EXTRACT_EXISTS');
    expect(readdirSync(target)).toEqual([]);
  });
});

describe('commands the kernel does not emit here', () => {
  it('an ENCODED_WRITE claiming a 1 TiB extent is refused before anything is allocated', async () => {
    const bytes = crafted([
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('f'), ino: 257n },
      { cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: b('f'), fileOffset: 0n, unencodedFileLen: 4096n, unencodedLen: 1n << 40n, unencodedOffset: 0n, compression: 2, data: new Uint8Array(100) },
    ], 2);
    const err = await extractBytes(bytes, freshDir());
    expect(err).toMatchObject({ code: 'ENCODED_TOO_LARGE', command: 'BTRFS_SEND_C_ENCODED_WRITE', path: 'f' });
  });

  it('FALLOCATE, FILEATTR and uncompressed ENCODED_WRITE give the same content as btrfs receive', async () => {
    const dir = freshDir();
    const warnings: string[] = [];
    const bytes = crafted([
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('f'), ino: 257n },
      { cmd: C.BTRFS_SEND_C_WRITE, path: b('f'), fileOffset: 0n, data: new Uint8Array(10000).fill(0x41) },
      // punch [100, 200): zeros, size kept
      { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('f'), mode: C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, fileOffset: 100n, size: 100n },
      // preallocate past EOF with keep-size: no visible change
      { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('f'), mode: C.FALLOC_FL_KEEP_SIZE, fileOffset: 0n, size: 1n << 20n },
      // plain allocation past EOF: the size grows
      { cmd: C.BTRFS_SEND_C_FALLOCATE, path: b('f'), mode: 0, fileOffset: 8192n, size: 8192n },
      { cmd: C.BTRFS_SEND_C_FILEATTR, path: b('f'), fileattr: 0n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('g'), ino: 258n },
      { cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: b('g'), fileOffset: 4096n, unencodedFileLen: 3000n, unencodedLen: 8192n, unencodedOffset: 100n, compression: 0, data: Uint8Array.from({ length: 8192 }, (_, i) => i & 0xff) },
    ], 2);
    await extractStreams([{ name: 'crafted', chunks: [bytes] }], dir, { warn: (m) => warnings.push(m) });
    const f = readFileSync(join(dir, 'vol', 'f'));
    expect(f.length).toBe(16384);
    expect(f.subarray(0, 100).every((x) => x === 0x41)).toBe(true);
    expect(f.subarray(100, 200).every((x) => x === 0)).toBe(true);
    expect(f.subarray(200, 10000).every((x) => x === 0x41)).toBe(true);
    expect(f.subarray(10000).every((x) => x === 0)).toBe(true);
    const g = readFileSync(join(dir, 'vol', 'g'));
    expect(g.length).toBe(4096 + 3000);
    expect([...g.subarray(4096, 4100)]).toEqual([100, 101, 102, 103]);
    expect(warnings.some((w) => w.includes('FILEATTR'))).toBe(true);
  });
});

describe('as an unprivileged user (setpriv to 65534)', () => {
  const why = !isRoot() ? 'needs root to drop to another user' : !existsSync('/usr/bin/setpriv') ? 'no setpriv'
    : !existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'commands', 'extract-stream.js')) ? 'run `npx tsc -p .` first' : null;
  // the checkout itself may be unreachable for uid 65534 (a clone under /root): run a world-readable copy
  let copy: ReachableCli | undefined;
  afterAll(() => copy?.remove());
  /** The CLI copy and a fresh directory uid 65534 owns, or undefined (after saying why) when it cannot run. */
  function setup(what: string): { cli: string; dir: string } | undefined {
    if (why) {
      skipReason(`tools-extract unprivileged ${what}`, why);
      return undefined;
    }
    copy ??= reachableCli();
    const dir = freshDir();
    mkdirSync(dir);
    execFileSync('chmod', ['0755', work]);
    execFileSync('chown', ['65534:65534', dir]);
    return { cli: copy.bin, dir };
  }

  it('everything but owners, device nodes and trusted.* xattrs, each with a warning', async () => {
    const u = setup('extract');
    if (!u) return;
    const { cli, dir } = u;
    // a target it cannot create is a diagnosed error, not a crash
    const closed = join(work, 'closed');
    mkdirSync(closed, { mode: 0o700 });
    const denied = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', cli, 'extract-stream', '-f', '/dev/null', join(closed, 'nope', 'x')]);
    expect(denied.status, denied.stderr.toString()).toBe(1);
    expect(denied.stderr.toString()).toMatch(/^btrfs-ts: ERROR: cannot create target directory/);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', cli, 'extract-stream', join(dir, 'out')], {
      input: readFileSync(join(STREAMS_DIR, 'full-v1.stream')),
    });
    const err = r.stderr.toString();
    expect(r.status, err).toBe(0);
    expect(err).toContain('owners are not restored (not running as root)');
    expect(err.match(/created as an empty regular file \(device nodes need root\)/g)?.length).toBe(3);
    expect(err).toMatch(/xattr "trusted\.symlink" on "link-rel" not applied/);
    const expected = readFileSync(join(STREAMS_DIR, 'full-v1.manifest'), 'latin1').split('\n').slice(0, -1);
    const actual = await manifestOf(join(dir, 'out', 'full'));
    const norm = (l: string) => l.replace(/ uid=\d+ gid=\d+/, '').replace(/ xattr\.trusted\.[^ ]*/g, '');
    const devices = new Set(expected.filter((l) => / (chr|blk) /.test(l)).map((l) => l.split(' ')[0]));
    const keep = (l: string) => !devices.has(l.split(' ')[0]);
    const diffs = diffManifests(expected.filter(keep).map(norm), actual.filter(keep).map(norm));
    expect(diffs, renderDiff(diffs, 'full-v1.manifest (normalized)', 'unprivileged extract')).toEqual([]);
    expect(actual.filter((l) => devices.has(l.split(' ')[0])).every((l) => / file .*size=0 /.test(l))).toBe(true);
  });

  it('a parent holding what its modes forbid reading: the snapshot is copied (contents first, modes after), both trees keep mode 000 / 0300', async () => {
    const u = setup('mode-000 parent');
    if (!u) return;
    const { cli, dir } = u;
    const full = encodeAll(1, [
      { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('base'), uuid: uuid(21), ctransid: 5n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('secret'), ino: 257n },
      { cmd: C.BTRFS_SEND_C_WRITE, path: b('secret'), fileOffset: 0n, data: b('locked away') },
      { cmd: C.BTRFS_SEND_C_CHMOD, path: b('secret'), mode: 0o000n },
      { cmd: C.BTRFS_SEND_C_MKDIR, path: b('drop'), ino: 258n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('drop/inside'), ino: 259n },
      { cmd: C.BTRFS_SEND_C_WRITE, path: b('drop/inside'), fileOffset: 0n, data: b('in a write-only dir') },
      { cmd: C.BTRFS_SEND_C_CHMOD, path: b('drop'), mode: 0o300n },
      { cmd: C.BTRFS_SEND_C_END },
    ]);
    const incr = encodeAll(1, [
      { cmd: C.BTRFS_SEND_C_SNAPSHOT, path: b('next'), uuid: uuid(22), ctransid: 6n, cloneUuid: uuid(21), cloneCtransid: 5n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('added'), ino: 260n },
      { cmd: C.BTRFS_SEND_C_END },
    ]);
    const streams = join(dir, 'streams');
    mkdirSync(streams);
    writeFileSync(join(streams, 'full'), full);
    writeFileSync(join(streams, 'incr'), incr);
    execFileSync('chmod', ['-R', 'a+rX', streams]);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'node', cli, 'extract-stream',
      '-f', join(streams, 'full'), '-f', join(streams, 'incr'), join(dir, 'out')]);
    expect(r.status, r.stderr.toString()).toBe(0);
    for (const sub of ['base', 'next']) {
      const root = join(dir, 'out', sub);
      expect(statSync(join(root, 'secret')).mode & 0o7777, sub).toBe(0);
      expect(statSync(join(root, 'drop')).mode & 0o7777, sub).toBe(0o300);
      // root reads past the modes: the contents were copied
      expect(readFileSync(join(root, 'secret'), 'utf8')).toBe('locked away');
      expect(readFileSync(join(root, 'drop', 'inside'), 'utf8')).toBe('in a write-only dir');
    }
    expect(existsSync(join(dir, 'out', 'next', 'added'))).toBe(true);
  });
});

describe('mutated kernel streams (valid CRCs, wrong values)', () => {
  it('only diagnosed errors escape, and nothing appears outside the target', async () => {
    const items = await collect(parseStream([readFileSync(join(STREAMS_DIR, 'sample.stream'))]));
    const fuzzRoot = join(work, 'fuzz');
    mkdirSync(fuzzRoot);
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const PATHS = ['..', '../x', '/etc/x', 'a/../../b', '', 'docs', 'docs/notes.txt', 'link', 'link/x', 'x//y'];
    const NUMS = [0n, 1n, 4095n, 1n << 20n, 1n << 40n, (1n << 63n) - 1n, (1n << 64n) - 1n];
    let diagnosed = 0;
    for (let iter = 0; iter < 40; iter++) {
      const mutated = items.map((it) => {
        if (it.kind !== 'command' || rnd(6) !== 0) return it;
        const c = { ...it.command } as Record<string, unknown>;
        const keys = Object.keys(c).filter((k) => k !== 'cmd' && k !== 'meta');
        const k = keys[rnd(keys.length)];
        if (k === undefined) return it;
        if (typeof c[k] === 'bigint') c[k] = NUMS[rnd(NUMS.length)];
        else if (c[k] instanceof Uint8Array && /path|Path/.test(k)) c[k] = b(PATHS[rnd(PATHS.length)]!);
        else if (c[k] instanceof Uint8Array) c[k] = (c[k] as Uint8Array).map((x, i) => (i % 7 === 3 ? x ^ 0x55 : x));
        else if (typeof c[k] === 'number') c[k] = rnd(9);
        return { ...it, command: c as unknown as typeof it.command };
      });
      const bytes = concat(...(await collect(writeStream(mutated))));
      const dir = join(fuzzRoot, `i${iter}`);
      const err = await extractStreams([{ name: 'fuzz', chunks: [bytes] }], dir, quiet).then(() => undefined, (e: unknown) => e);
      if (err !== undefined) {
        expect(err, String((err as Error)?.stack)).toBeInstanceOf(BtrfsTsError);
        diagnosed++;
      }
      // everything created lives in the iteration's own directory
      expect(readdirSync(fuzzRoot).sort()).toEqual(Array.from({ length: iter + 1 }, (_, i) => `i${i}`).sort());
      expect(existsSync('/etc/x')).toBe(false);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
    }
    expect(diagnosed).toBeGreaterThan(10);
  });
});

describe('the project hostile corpus (test/hostile, written for the image receiver)', () => {
  const dir = join(import.meta.dirname, 'hostile');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.stream')).sort() : [];
  // these must be refused by extract too: they are wrong whatever the target filesystem
  const mustRefuse = /^(PATH_|BAD_SUBVOL_NAME|FILE_TOO_BIG|ENCODED_|BAD_ENCODED|ZLIB_CORRUPT|UNKNOWN_COMPRESSION|ENCRYPTED|NO_SUBVOLUME|MISSING_END|RENAME_ROOT|RMDIR_ROOT|FALLOCATE_MODE|NOT_A_FILE|CLONE_OUT_OF_RANGE|PARENT_NOT_FOUND|RENAME_INTO_SELF|DIR_NOT_EMPTY|IS_A_DIR|NOT_A_DIR|LINK_TO_DIR|PATH_EXISTS)/;
  it('no internal errors; the filesystem-independent cases are refused', async () => {
    if (files.length === 0) {
      skipReason('tools-extract hostile corpus', 'test/hostile has no streams');
      return;
    }
    const accepted: string[] = [];
    for (const f of files) {
      const err = await extractStreams([join(dir, f)], freshDir(), quiet).then(() => undefined, (e: unknown) => e);
      if (err === undefined) {
        accepted.push(f);
        continue;
      }
      expect(err, `${f}: ${String((err as Error)?.stack)}`).toBeInstanceOf(BtrfsTsError);
    }
    expect(accepted.filter((f) => mustRefuse.test(f))).toEqual([]);
  });
});
