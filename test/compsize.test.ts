import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCompsize, PREALLOC_ROW } from '../src/tools/compsize.js';
import { CLI } from './helpers/image-harness.js';
import { STREAMS_DIR } from './helpers/streams.js';
import { kernelImage, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * `btrfs-ts compsize IMAGE PATH...` against compsize itself (btrfs-compsize 1.5) on the kernel's mount of
 * the same image: every line and the exit status, for the whole image, subvolumes, a snapshot, single
 * files, a path that does not exist, with -b and -x. The kernel's image mixes what compsize tells apart:
 * zstd, zlib and lzo extents (per-directory compression property), plain ones, inline files, prealloc
 * ranges partly written, holes, reflinks, hard links, a nested subvolume and a snapshot of its parent
 * (whose placeholder directory compsize enters). A btrfs-ts-received image of compressed streams too.
 */

const why = skipReason('mount') ?? (spawnSync('compsize', ['-h']).error ? 'compsize is not installed (btrfs-compsize)' : undefined);
if (why) console.warn(`compsize: skipping: ${why}`);

let dir = '';
const kernelImg = (): string => join(dir, 'kernel.img');
const receivedImg = (): string => join(dir, 'received.img');

beforeAll(() => {
  if (why) return;
  dir = tmpDir('btrfs-ts-compsize-');
  kernelImage(kernelImg(), `
    set -e
    btrfs -q subvolume create s; cd s
    mkdir z l g p
    btrfs property set z compression zstd; btrfs property set l compression lzo; btrfs property set g compression zlib
    for d in z l g p; do
      for i in 1 2 3 4; do seq 1 $((i * 30000)) > $d/t$i; done
      head -c 300000 /dev/urandom > $d/rand
      echo small > $d/inline
    done
    fallocate -l 1M p/pre; dd if=/dev/urandom of=p/pre bs=4096 seek=10 count=3 conv=notrunc status=none
    truncate -s 5M p/sparse; echo end >> p/sparse
    cp --reflink=always z/t4 p/refl; ln z/t3 p/hard; : > p/empty
    btrfs -q subvolume create nested; seq 1 20000 > nested/n
    cd ..; btrfs -q subvolume snapshot -r s snap; sync`);
  for (const s of ['zstd-v2.stream', 'incr-zstd-v2.stream']) execFileSync(process.execPath, [CLI, 'receive', '-q', '-f', join(STREAMS_DIR, s), receivedImg()]);
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** What compsize says (stdout, stderr, status) in the mount of `image`, and what btrfs-ts says of the file. */
function both(image: string, args: string[], paths: string[]): { kernel: string; ours: string } {
  const m = mount(image, 'ro');
  try {
    const k = spawnSync('compsize', [...args, ...(paths.length ? paths : ['.'])], { cwd: m.dir, encoding: 'utf8' });
    const o = spawnSync(process.execPath, [CLI, 'compsize', ...args, image, ...paths], { encoding: 'utf8' });
    // (ours warns that the kernel has the image mounted: compsize needs it mounted to answer)
    const ourErr = o.stderr.split('\n').filter((l) => !/ is mounted /.test(l)).join('\n');
    return { kernel: `${k.stdout}|${k.stderr}|${k.status}`, ours: `${o.stdout}|${ourErr}|${o.status}` };
  } finally {
    m.umount();
  }
}

describe.skipIf(why !== undefined)('btrfs-ts compsize against compsize on the mount', () => {
  const cases: [string[], string[]][] = [
    [[], []], [['-b'], []], [['-x'], []], [['-b', '-x'], ['s']], [[], ['s']], [['-x'], ['s']], [[], ['snap']], [['-x'], ['snap']],
    [['-b'], ['s/z', 's/l', 's/g']], [['-b'], ['s/p']], [['-b'], ['s/p/pre', 's/p/sparse', 's/p/refl', 's/z/t4']], [[], ['s/nested', 'snap/nested']],
    [[], ['s/p/empty']], [[], ['no/such/file']], [['-b'], ['s/z/inline']],
  ];
  for (const [args, paths] of cases) {
    it(`compsize ${[...args, ...paths].join(' ') || '(the whole image)'}`, () => {
      const r = both(kernelImg(), args, paths);
      expect(r.ours).toBe(r.kernel);
    });
  }
  it('a received image of compressed streams (encoded writes stored as they came)', () => {
    for (const args of [[], ['-b']]) {
      const r = both(receivedImg(), args, []);
      expect(r.ours).toBe(r.kernel);
      expect(r.ours).toMatch(/^zstd /m);
    }
  });
});

describe('compsize\'s report', () => {
  const totals = (rows: [number, bigint, bigint, bigint][]) => ({
    disk: new Map(rows.map(([r, d]) => [r, d])), uncompressed: new Map(rows.map(([r, , u]) => [r, u])),
    referenced: new Map(rows.map(([r, , , f]) => [r, f])), files: 2, extents: 3, refs: 4, inline: 1,
  });
  // (the expected lines from a transcription of compsize.c's human_bytes and print_table, not from this code)
  it('rows in compsize\'s order and rounding: unknown types as ?N, prealloc last', () => {
    const r = formatCompsize(totals([[PREALLOC_ROW, 8192n, 8192n, 4096n], [3, 10239n, 10240n * 1024n, 999n], [9, 1n, 3n, 3n]]));
    expect(r.out).toBe([
      'Processed 2 files, 3 regular extents (4 refs), 1 inline.',
      'Type       Perc     Disk Usage   Uncompressed Referenced  ',
      'TOTAL        0%       18K          10M         4.9K       ',
      'zstd         0%      9.9K          10M         999B       ',
      '?9          33%        1B           3B           3B       ',
      'prealloc   100%      8.0K         8.0K         4.0K       ',
      '',
    ].join('\n'));
  });
  it('nothing with data: compsize\'s line for standard error', () => {
    expect(formatCompsize({ ...totals([]), files: 0 })).toEqual({ err: 'No files.\n' });
    expect(formatCompsize(totals([]))).toEqual({ err: 'All empty or still-delalloced files.\n' });
  });
});
