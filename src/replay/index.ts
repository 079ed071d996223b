import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReceiveError } from '../errors.js';
import { BtrfsImage } from '../image/read/index.js';
import { imageTreeSource } from '../image/read/tree-source.js';
import { createFilesystem } from '../image/write/create.js';
import { diffManifests, renderDiff, type ManifestDiff } from '../manifest/compare.js';
import { formatManifest } from '../manifest/format.js';
import { DEFAULT_METADATA_CACHE } from '../receive/image-file.js';
import { receiveStreams, type ReceivedSubvol } from '../receive/index.js';
import { FileDevice } from '../io/image-file.js';
import { openImageFile } from '../io/image-read-file.js';
import { openInput } from '../io/input.js';

export interface ReplayOptions {
  /** Stream files, received in order into one scratch image. */
  streams: string[];
  /** Stored manifest to compare with (see docs/manifest.md). */
  expect: string;
  /** Subvolume to compare (default: the last one received). */
  subvol?: string;
}

export interface ReplayResult {
  subvolumes: ReceivedSubvol[];
  compared: string;
  entries: number;
  diffs: ManifestDiff[];
  /** Human-readable difference (empty when equal). */
  report: string;
}

/**
 * The CI replay check: receive captured streams into a scratch image that is thrown away afterwards, then
 * compare the manifest of a received subvolume — read from the image, not a mount — with a stored one.
 */
export async function replay(o: ReplayOptions): Promise<ReplayResult> {
  if (o.streams.length === 0) throw new ReceiveError('USAGE', 'replay needs at least one stream (-f)');
  const expected = readFileSync(o.expect, 'latin1').split('\n');
  const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-replay-'));
  const image = join(dir, 'replay.img');
  try {
    const dev = FileDevice.create(image, 256n << 20n);
    const subvolumes: ReceivedSubvol[] = [];
    try {
      const fs = createFilesystem(dev, { growable: true, cacheBytes: DEFAULT_METADATA_CACHE });
      for (const s of o.streams) subvolumes.push(...(await receiveStreams(await openInput(s), fs)).subvolumes);
    } finally {
      dev.close();
    }
    const name = o.subvol ?? subvolumes.at(-1)?.name;
    if (name === undefined) throw new ReceiveError('NO_SUBVOLUME', 'the streams held no subvolume');
    const file = await openImageFile(image);
    try {
      const img = await BtrfsImage.open(file);
      const actual: string[] = [];
      for await (const l of formatManifest(imageTreeSource(img, await img.resolve(name)))) actual.push(l);
      const diffs = diffManifests(expected, actual);
      return { subvolumes, compared: name, entries: actual.length, diffs, report: diffs.length ? renderDiff(diffs, o.expect, `replay:${name}`) : '' };
    } finally {
      await file.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
