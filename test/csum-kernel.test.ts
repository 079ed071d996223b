import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { runManifestCli } from './helpers/manifest-cli.js';
import { STREAMS_DIR, storedManifest } from './helpers/streams.js';
import { checkProblems, manifestOf, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * Images of the three checksum types besides crc32c (the rest of the suite covers crc32c), judged by
 * btrfs-progs and the kernel: received into when mkfs.btrfs made them, and made by btrfs-ts mkfs.
 * One image per type carries a full stream, its incremental and a compressed v2 stream.
 */
const why = skipReason('mount');
if (why) console.warn(`SKIP csum-kernel.test: ${why}`);

const work = tmpDir('btrfs-ts-csumk-');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const TYPES = ['xxhash', 'sha256', 'blake2'];
const RECEIVED: [stream: string, subvol: string][] = [['full-v1', 'full'], ['incr-v1', 'incr'], ['lzo-v2', 'lzo']];

/** btrfs check with data checksums verified too: the whole output, asserted clean by the caller. */
function checkDataCsum(image: string): string {
  const r = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', image], { encoding: 'utf8' });
  return `exit ${r.status}\n${r.stdout}\n${r.stderr}`;
}
function expectClean(image: string): void {
  const out = checkDataCsum(image);
  expect(out.startsWith('exit 0\n'), out).toBe(true);
  expect(checkProblems(out), out).toEqual([]);
}
async function cli(...args: string[]): Promise<number> {
  return main(['node', 'btrfs-ts', ...args]);
}
function superCsumType(image: string): string {
  return /^csum_type\s+\d+\s+\((\w+)\)/m.exec(execFileSync('btrfs', ['inspect-internal', 'dump-super', image], { encoding: 'utf8' }))?.[1] ?? '?';
}

describe.skipIf(!!why)('mkfs.btrfs --csum images received into', () => {
  // full, then its incremental, then a compressed v2 stream: one input of three concatenated streams
  const streams = path.join(work, 'three.stream');
  fs.writeFileSync(streams, Buffer.concat(RECEIVED.map(([s]) => fs.readFileSync(path.join(STREAMS_DIR, `${s}.stream`)))));

  for (const type of TYPES) {
    it(`${type}: check --check-data-csum clean, image manifests and the kernel's view equal the stored ones, scrub clean, kernel rw use`, async () => {
      const image = path.join(work, `progs-${type}.img`);
      execFileSync('truncate', ['-s', '300M', image]);
      execFileSync('mkfs.btrfs', ['-q', '--csum', type, image]);
      expect(await cli('receive', '-q', '-f', streams, image)).toBe(0);
      expect(superCsumType(image)).toBe(type === 'xxhash' ? 'xxhash64' : type);
      expectClean(image);
      for (const [stream, subvol] of RECEIVED) {
        const r = await runManifestCli([image, '--path', subvol, '--expect', path.join(STREAMS_DIR, `${stream}.manifest`)]);
        expect(r.out).toMatch(/ matches /);
      }
      const m = mount(image, 'rw');
      try {
        for (const [stream, subvol] of RECEIVED) expect(await manifestOf(path.join(m.dir, subvol))).toEqual(storedManifest(`${stream}.manifest`));
        const scrub = spawnSync('btrfs', ['scrub', 'start', '-B', m.dir], { encoding: 'utf8' });
        expect(scrub.status, scrub.stdout + scrub.stderr).toBe(0);
        expect(scrub.stdout).toMatch(/no errors found|Error summary:\s+no errors found/);
        execFileSync('sh', ['-c', `dd if=/dev/urandom of=${m.dir}/new bs=1M count=3 status=none && sync`]);
      } finally {
        m.umount();
      }
      expectClean(image);
    }, 300_000);
  }
});

describe.skipIf(!!why)('btrfs-ts mkfs --csum images', () => {
  const root = path.join(work, 'root');
  fs.mkdirSync(path.join(root, 'dir', 'sub'), { recursive: true });
  // 5 MiB of pseudo-random data: several csum items for every type; a small (inline) file; a link
  let x = 12345;
  const big = Buffer.alloc(5 << 20);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((x = (Math.imul(x, 1103515245) + 12345) >>> 0), i);
  fs.writeFileSync(path.join(root, 'dir', 'big'), big);
  fs.writeFileSync(path.join(root, 'dir', 'sub', 'small'), 'small file\n');
  fs.symlinkSync('dir/big', path.join(root, 'link'));

  for (const type of ['crc32c', ...TYPES]) {
    it(`${type}: check --check-data-csum clean, the kernel mounts it and shows the rootdir`, async () => {
      const image = path.join(work, `ts-${type}.img`);
      expect(await cli('mkfs', '-q', '--csum', type, '-r', root, image)).toBe(0);
      expect(superCsumType(image)).toBe(type === 'xxhash' ? 'xxhash64' : type);
      expectClean(image);
      const m = mount(image, 'ro');
      try {
        expect(await manifestOf(m.dir)).toEqual(await manifestOf(root));
      } finally {
        m.umount();
      }
    }, 300_000);
  }

  it('an unknown --csum is a diagnosed error and writes nothing', async () => {
    const image = path.join(work, 'bad.img');
    expect(await cli('mkfs', '-q', '--csum', 'md5', image)).not.toBe(0);
    expect(fs.existsSync(image)).toBe(false);
  });
});
