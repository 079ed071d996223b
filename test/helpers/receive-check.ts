import { spawnSync } from 'node:child_process';
import { expect } from 'vitest';
import * as lib from '../../src/index.js';
import type { SendCommand } from '../../src/stream/types.js';

/**
 * Receives crafted commands (protocol 2) into a new image `img` and gives the manifest lines of
 * subvolume `subvol` as the image holds it.
 */
export async function receiveManifest(img: string, cmds: SendCommand[], subvol: string): Promise<string[]> {
  await lib.receiveIntoImage(img, [lib.encodeStreamHeader(2), ...cmds.map((c) => lib.encodeCommand(c, 2))]);
  await using r = await lib.openImage(img);
  const lines: string[] = [];
  for await (const l of lib.formatManifest(lib.imageTreeSource(r.image, await r.image.resolve(subvol)))) lines.push(l);
  return lines;
}

/** btrfs check --readonly --check-data-csum of `img` is clean; where btrfs-progs is missing, `who` says so and skips. */
export function expectCheckClean(img: string, who: string): void {
  if (spawnSync('btrfs', ['--version']).status !== 0) {
    console.warn(`${who}: btrfs-progs missing, skipping btrfs check --check-data-csum`);
    return;
  }
  const chk = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
  expect(chk.stdout + chk.stderr).not.toMatch(/mismatch|error\(s\) found/);
  expect(chk.status).toBe(0);
}
