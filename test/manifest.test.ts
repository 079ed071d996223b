import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, symlinkSync, linkSync, mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runManifestCli } from './helpers/manifest-cli.js';
import { dirTreeSource, splitDev, splitNs } from '../src/dirtree/source.js';
import { parseGetfattrDump } from '../src/dirtree/xattrs.js';
import { diffManifests, parseManifestLine, renderDiff, unescapePath } from '../src/manifest/compare.js';
import { comparePathBytes, escapeField, formatManifest } from '../src/manifest/format.js';
import { escapePath } from '../src/dump/escape.js';

const isRoot = process.getuid?.() === 0;
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function manifestOf(dir: string, opts = {}): Promise<string[]> {
  const lines: string[] = [];
  for await (const l of formatManifest(dirTreeSource(dir), opts)) lines.push(l);
  return lines;
}

const runCli = runManifestCli;

function touch(path: string, when: string, atimeOnly = false): void {
  execFileSync('touch', ['-h', ...(atimeOnly ? ['-a'] : []), '-d', when, '--', path]);
}

describe('manifest of a real directory tree', () => {
  let root: string;
  let dir: string;
  const nonUtf8 = Buffer.from([0x6e, 0xff, 0xfe, 0x0a, 0x5c]); // n, two invalid bytes, newline, backslash
  const big = Buffer.alloc(3 * 1024 * 1024 + 5, 0x61); // bigger than one read chunk

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'btrfs-ts-manifest-'));
    dir = join(root, 'tree');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a file'), 'hello\n');
    writeFileSync(join(dir, 'big'), big);
    writeFileSync(join(dir, 'empty'), '');
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'tab\there'), 'x');
    linkSync(join(dir, 'a file'), join(dir, 'sub', 'hard'));
    symlinkSync('does/not/exist', join(dir, 'dangling'));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    writeFileSync(Buffer.concat([Buffer.from(dir + '/'), nonUtf8]), 'odd');
    chmodSync(join(dir, 'sub'), 0o2750);
    chmodSync(join(dir, 'a file'), 0o4711);
    execFileSync('setfattr', ['-n', 'user.short', '-v', 'v=1 x', join(dir, 'a file')]);
    execFileSync('setfattr', ['-n', 'user.bin', '-v', '0x00ff0a', join(dir, 'a file')]);
    execFileSync('setfattr', ['-n', 'user.long', '-v', 'L'.repeat(200), join(dir, 'sub')]);
    execFileSync('setfattr', ['-n', 'user.we=ird', '-v', '', join(dir, 'empty')]);
    if (isRoot) {
      execFileSync('mknod', [join(dir, 'cdev'), 'c', '511', '70000']);
      execFileSync('mknod', [join(dir, 'bdev'), 'b', '7', '3']);
      execFileSync('chown', ['1234:5678', join(dir, 'empty')]);
    } else {
      console.warn('manifest.test: not root, skipping device nodes and chown in the test tree');
    }
    touch(join(dir, 'a file'), '2001-02-03 04:05:06.123456789 UTC');
    touch(join(dir, 'empty'), '1960-01-01 00:00:00.5 UTC');
    touch(join(dir, 'dangling'), '2300-01-01 00:00:00.000000001 UTC');
    touch(join(dir, 'big'), '1999-01-01 00:00:00 UTC', true);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('lists every entry once, sorted by raw path bytes, root first as "."', async () => {
    const lines = await manifestOf(dir);
    const paths = lines.map((l) => unescapePath(parseManifestLine(l).path));
    expect(lines[0]?.startsWith('. dir ')).toBe(true);
    for (let i = 1; i < paths.length; i++) {
      expect(comparePathBytes(paths[i - 1] as Uint8Array, paths[i] as Uint8Array)).toBeLessThan(0);
    }
    const expected = ['.', 'a\\040file', 'big', 'dangling', 'empty', 'fifo', 'n\\377\\376\\n\\\\', 'sub', 'sub/hard', 'sub/tab\\there'];
    if (isRoot) expected.push('bdev', 'cdev');
    expect(lines.map((l) => parseManifestLine(l).path).sort()).toEqual(expected.sort());
  });

  it('prints each field as specified', async () => {
    const byPath = new Map((await manifestOf(dir)).map((l) => [parseManifestLine(l).path, parseManifestLine(l)]));
    const f = byPath.get('a\\040file');
    expect(f?.type).toBe('file');
    expect(f?.fields.get('mode')).toBe('4711');
    expect(f?.fields.get('size')).toBe('6');
    expect(f?.fields.get('mtime')).toBe('981173106.123456789');
    expect(f?.fields.get('sha256')).toBe(sha('hello\n'));
    expect(f?.fields.get('link')).toBe('a\\040file'); // smallest path of its hard-link group
    expect(f?.fields.get('xattr.user.short')).toBe('v=1\\040x');
    expect(f?.fields.get('xattr.user.bin')).toBe('\\000\\377\\n');
    expect(f?.fields.has('atime')).toBe(false);
    expect(byPath.get('sub/hard')?.fields.get('link')).toBe('a\\040file');
    expect(byPath.get('sub/hard')?.fields.get('sha256')).toBe(sha('hello\n'));

    const big1 = byPath.get('big');
    expect(big1?.fields.get('sha256')).toBe(sha(big));
    expect(big1?.fields.get('size')).toBe(String(big.length));
    expect(big1?.fields.has('link')).toBe(false);

    const e = byPath.get('empty');
    expect(e?.fields.get('mtime')).toBe('-315619200.500000000') // floor: -315619199.5 s = -315619200 s + 0.5 s;
    expect(e?.fields.get('sha256')).toBe(sha(''));
    expect(e?.fields.get('xattr.user.we\\075ird')).toBe('');
    if (isRoot) {
      expect(e?.fields.get('uid')).toBe('1234');
      expect(e?.fields.get('gid')).toBe('5678');
      expect(byPath.get('cdev')?.type).toBe('chr');
      expect(byPath.get('cdev')?.fields.get('rdev')).toBe('511:70000');
      expect(byPath.get('bdev')?.type).toBe('blk');
      expect(byPath.get('bdev')?.fields.get('rdev')).toBe('7:3');
      expect(byPath.get('cdev')?.fields.has('size')).toBe(false);
    }

    const s = byPath.get('dangling');
    expect(s?.type).toBe('symlink');
    expect(s?.fields.get('target')).toBe('does/not/exist');
    expect(s?.fields.get('size')).toBe('14');
    expect(s?.fields.get('mtime')).toBe('10413792000.000000001');

    const d = byPath.get('sub');
    expect(d?.type).toBe('dir');
    expect(d?.fields.get('mode')).toBe('2750');
    expect(d?.fields.has('size')).toBe(false);
    expect(d?.fields.get('xattr.user.long')).toBe('sha256:' + sha('L'.repeat(200)));

    expect(byPath.get('fifo')?.type).toBe('fifo');
    expect(byPath.get('n\\377\\376\\n\\\\')?.fields.get('sha256')).toBe(sha('odd'));
    expect(byPath.get('sub/tab\\there')?.fields.get('sha256')).toBe(sha('x'));
  });

  it('adds atime and nlink only when asked', async () => {
    const lines = await manifestOf(dir, { atime: true, nlink: true });
    const big1 = lines.map(parseManifestLine).find((p) => p.path === 'big');
    expect(big1?.fields.get('atime')).toBe('915148800.000000000');
    expect(big1?.fields.get('nlink')).toBe('1');
    expect(lines.map(parseManifestLine).find((p) => p.path === 'sub/hard')?.fields.get('nlink')).toBe('2');
  });

  it('is stable: two runs give identical output', async () => {
    expect(await manifestOf(dir)).toEqual(await manifestOf(dir));
  });

  it('--expect passes on the same tree and fails naming the changed path', async () => {
    const file = join(root, 'expected.manifest');
    writeFileSync(file, (await manifestOf(dir)).join('\n') + '\n');
    const ok = await runCli([dir, '--expect', file]);
    expect(ok.exitCode).toBe(0);
    expect(ok.out).toMatch(/matches/);

    writeFileSync(join(dir, 'sub', 'tab\there'), 'changed');
    touch(join(dir, 'sub', 'tab\there'), '2001-02-03 04:05:06 UTC');
    writeFileSync(join(dir, 'new file'), '');
    const bad = await runCli([dir, '--expect', file]);
    expect(bad.exitCode).toBe(1);
    expect(bad.out).toContain('@ sub/tab\\there: size, mtime, sha256 differ');
    expect(bad.out).toContain(`+ sub/tab\\there file`);
    expect(bad.out).toContain('@ new\\040file: unexpected');
    expect(bad.out).toContain('@ .: mtime differ'); // creating a file changed the root dir's mtime
    expect(bad.out).toMatch(/\n3 difference\(s\)\n$/);
  });
});

describe('manifest helpers', () => {
  it('splits nanoseconds with floor semantics, also before 1970', () => {
    expect(splitNs(-1n)).toEqual({ sec: -1n, nsec: 999_999_999 });
    expect(splitNs(-1_500_000_000n)).toEqual({ sec: -2n, nsec: 500_000_000 });
    expect(splitNs(1_000_000_001n)).toEqual({ sec: 1n, nsec: 1 });
  });

  it('splits dev_t like glibc major()/minor()', () => {
    // makedev(511, 70000) in glibc's layout
    const dev = ((511n & 0xfffn) << 8n) | ((511n & ~0xfffn) << 32n) | (70000n & 0xffn) | ((70000n & ~0xffn) << 12n);
    expect(splitDev(dev)).toEqual({ major: 511, minor: 70000 });
    expect(splitDev(0x103n)).toEqual({ major: 1, minor: 3 });
  });

  it('parses getfattr output with escaped names and raw high bytes', () => {
    const out = Buffer.concat([
      Buffer.from('# file: .\nuser.root=0x72\n\n# file: a\\012b\\134c\nuser.x\\075y=0x\nuser.v=0x00ff\n\n# file: '),
      Buffer.from([0xff, 0x20, 0x41]),
      Buffer.from('\nuser.z=0x31\n\n'),
    ]);
    const m = parseGetfattrDump(out);
    expect([...m.keys()].sort()).toEqual(['', 'a\nb\\c', '\xff A'].sort());
    const x = m.get('a\nb\\c') ?? [];
    expect(Buffer.from(x[0]?.name ?? []).toString()).toBe('user.x=y');
    expect(x[0]?.value.length).toBe(0);
    expect([...(x[1]?.value ?? [])]).toEqual([0, 255]);
  });

  it('unescapePath inverts escapePath and escapeField for every byte; fields hold no raw space', () => {
    const all = Uint8Array.from({ length: 255 }, (_, i) => i + 1);
    expect([...unescapePath(escapePath(all))]).toEqual([...all]);
    expect([...unescapePath(escapeField(all))]).toEqual([...all]);
    expect(escapeField(all)).not.toContain(' ');
  });

  it('diffManifests reports missing, extra and changed entries in path order', () => {
    const d = diffManifests(
      ['. dir mode=0755', 'a file mode=0644 size=1', 'b file mode=0644'],
      ['. dir mode=0755', 'a file mode=0600 size=1', 'c fifo mode=0644'],
    );
    expect(d.map((x) => [x.kind, x.path])).toEqual([['changed', 'a'], ['missing', 'b'], ['extra', 'c']]);
    expect(d[0]?.kind === 'changed' && d[0].fields).toEqual(['mode']);
    expect(renderDiff(d, 'exp', 'act')).toContain('@ a: mode differ\n- a file mode=0644 size=1\n+ a file mode=0600 size=1');
  });
});
