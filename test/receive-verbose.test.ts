import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mount, skipReason } from './image-write-helpers.js';
import { skipReason as announceSkip } from './helpers/oracle.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * `receive -v` / `-vv` print the lines `btrfs receive -v` / `-vv` print (btrfs-progs cmds/receive.c),
 * in the same order, on the same stream: the kernel's receive into a loop-mounted btrfs is the oracle.
 */
const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-verbose-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const stream = (n: string) => join(STREAMS_DIR, `${n}.stream`);

function ours(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'receive', ...args], { encoding: 'latin1' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Our stderr without the summary that -v adds after the last line btrfs receive would print. */
const traceOf = (stderr: string) => stderr.slice(0, stderr.search(/^received \d+ subvolume/m) >>> 0);

describe('receive -vv without a kernel: the lines btrfs receive -vv prints for the sample stream', () => {
  it('creates, renames, xattrs, encoded writes, owners, modes, times; the received-uuid ioctl at the end', () => {
    const r = ours(['-vv', '-f', stream('sample'), join(work, 'sample.img')]);
    expect(r.status).toBe(0);
    const lines = traceOf(r.stderr).split('\n');
    // as btrfs-progs v6.2 printed them for this stream (receive -vv into a mounted btrfs)
    expect(lines.slice(0, 7)).toEqual([
      'At subvol sample',
      'receiving subvol sample uuid=7d20c374-3235-ca4c-ba67-841676a50c81, stransid=13',
      'chown  - uid=0, gid=0',
      'chmod  - mode=0755',
      'mkdir o257-13-0',
      'rename o257-13-0 -> docs',
      'chown docs - uid=0, gid=0',
    ]);
    expect(lines).toContain('set_xattr docs/notes.txt - name=user.comment data_len=15 data=btrfs-ts sample');
    expect(lines).toContain('encoded_write docs/notes.txt - offset=0, len=12288, unencoded_offset=0, unencoded_file_len=40000, unencoded_len=40960, compression=2, encryption=0');
    expect(lines).toContain('symlink o263-13-0 -> docs/notes.txt');
    expect(lines.filter((l) => l !== '').at(-1)).toBe('BTRFS_IOC_SET_RECEIVED_SUBVOL uuid=7d20c374-3235-ca4c-ba67-841676a50c81, stransid=13');
    // the summary of -v follows
    expect(r.stderr).toMatch(/^received 1 subvolume\(s\) from 1 stream\(s\)/m);
  });

  it('-v prints only the subvolume lines, writes and clones; no flag only "At subvol"; -q nothing', () => {
    const v = ours(['-v', '-f', stream('full-v1'), join(work, 'v.img')]);
    expect(v.status).toBe(0);
    const lines = traceOf(v.stderr).split('\n').filter((l) => l !== '');
    expect(lines[0]).toBe('At subvol full');
    expect(lines[1]).toMatch(/^receiving subvol full uuid=[0-9a-f-]{36}, stransid=\d+$/);
    // (full-v1 has names holding newlines, so not every line starts a command: look for -vv's words)
    expect(lines.filter((l) => /^(mkfile|mkdir|rename|link|chown|chmod|utimes|set_xattr|truncate) /.test(l))).toEqual([]);
    expect(lines.some((l) => /^write \S.* - offset=\d+ length=\d+$/.test(l))).toBe(true);
    expect(lines.some((l) => /^clone \S.* - source=\S.* source offset=\d+ offset=\d+ length=\d+$/.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^BTRFS_IOC_SET_RECEIVED_SUBVOL /);
    const plain = ours(['-f', stream('clone-src-v1'), join(work, 'v.img')]);
    expect(plain.stderr).toBe('At subvol clone-src\n');
    const quiet = ours(['-q', '-f', stream('multi-v1'), join(work, 'v.img')]);
    expect(quiet.status).toBe(0);
    expect(quiet.stderr + quiet.stdout).toBe('');
  });
});

const why = skipReason('mount');
if (why) announceSkip('receive-verbose kernel comparison', why);

describe.skipIf(why !== undefined)('receive -v / -vv print what btrfs receive -v / -vv print (kernel as oracle)', () => {
  // full, incremental (renames, orphans), clones from another subvolume, several subvolumes, compressed
  const chain = ['full-v1', 'incr-v1', 'clone-src-v1', 'clones-v1', 'multi-v1', 'zstd-v2', 'incr-zstd-v2'];
  for (const flag of ['-v', '-vv']) {
    it(`${flag}: ${chain.join(', ')}`, () => {
      const dir = mkdtempSync(join(work, 'k-'));
      const kimg = join(dir, 'k.img');
      spawnSync('truncate', ['-s', '1G', kimg]);
      expect(spawnSync('mkfs.btrfs', ['-q', kimg]).status).toBe(0);
      const m = mount(kimg);
      try {
        for (const s of chain) {
          const theirs = spawnSync('btrfs', ['receive', flag, '-f', stream(s), m.dir], { encoding: 'latin1' });
          expect(theirs.status, theirs.stderr).toBe(0);
          const mine = ours([flag, '-f', stream(s), join(dir, 'o.img')]);
          expect(mine.status, mine.stderr).toBe(0);
          expect(traceOf(mine.stderr)).toBe(theirs.stderr);
          // "At snapshot" is printed on stdout by btrfs-progs (pr_verbose); so it is here
          expect(mine.stdout).toBe(theirs.stdout);
        }
      } finally {
        m.umount();
      }
    });
  }
});
