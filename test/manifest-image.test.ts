import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { skipReason } from './image-write-helpers.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runManifestCli } from './helpers/manifest-cli.js';

/**
 * `btrfs-ts manifest IMAGE --path P` reads a subvolume straight out of an unmounted image. Oracle: the
 * kernel receives captured streams into a loop-mounted btrfs, the image is unmounted, and the manifest
 * read from the image file must equal the stored manifest of the kernel-received tree.
 */
const STREAMS = join(import.meta.dirname, '..', 'streams');

const runCli = runManifestCli;

const why = skipReason('mount');
if (why) console.warn(`SKIP manifest-image.test (needs the kernel to receive): ${why}`);

describe.skipIf(!!why)('manifest of a subvolume read from an image file', () => {
  let work: string;
  let img: string;
  const received: [stream: string, subvol: string][] = [
    ['sample', 'sample'], ['full-v1', 'full'], ['incr-v1', 'incr'], ['zstd-v2', 'zstd'], ['lzo-v2', 'lzo'],
  ];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'btrfs-ts-mimage-'));
    img = join(work, 'fs.img');
    const mnt = join(work, 'mnt');
    mkdirSync(mnt);
    execFileSync('truncate', ['-s', '512M', img]);
    execFileSync('mkfs.btrfs', ['-q', '-f', img]);
    execFileSync('mount', ['-o', 'loop', img, mnt]);
    try {
      for (const [stream] of received) execFileSync('btrfs', ['-q', 'receive', '-f', join(STREAMS, `${stream}.stream`), mnt]);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  for (const [stream, subvol] of received) {
    it(`${stream}: image manifest of ${subvol} equals the stored kernel manifest`, async () => {
      const r = await runCli([img, '--path', subvol, '--expect', join(STREAMS, `${stream}.manifest`)]);
      expect(r.out).toMatch(/ matches /);
      expect(r.exitCode).toBe(0);
    });
  }

  it('a different subvolume does not match (the comparison can fail)', async () => {
    const r = await runCli([img, '--path', 'zstd', '--expect', join(STREAMS, 'lzo-v2.manifest')]);
    expect(r.exitCode).toBe(1);
    expect(r.out).toMatch(/@ big\.log: .*sha256.*differ/);
  });

  it('--path is refused for a directory', async () => {
    await expect(runCli([work, '--path', 'x'])).rejects.toThrow(/--path applies to an image/);
  });
});
