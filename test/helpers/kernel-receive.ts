import { execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BTRFS_SEND_C_UTIMES } from '../../src/stream/constants.js';
import { parseStream } from '../../src/stream/parser.js';

/** Helpers of the tests that take the kernel's `btrfs receive` as the oracle of ours. */

/** Runs a tool; its stderr goes into the thrown error when it fails. */
export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * When an incremental stream sends no UTIMES for the top directory, the kernel's receiver leaves there the
 * time its own orphan renames happened: a receive-time value that no second receiver can reproduce.
 */
export async function rootTimeIsReceiveTime(stream: string): Promise<boolean> {
  for await (const it of parseStream(createReadStream(stream))) {
    if (it.kind === 'command' && it.command.cmd === BTRFS_SEND_C_UTIMES && (it.command as { path: Uint8Array }).path.length === 0) return false;
  }
  return true;
}

export function maskRootTime(lines: string[]): string[] {
  return lines.map((l) => (l.startsWith('. ') ? l.replace(/ mtime=\S+/, ' mtime=(receive time)') : l));
}

/** A fresh 1 GiB btrfs made by mkfs.btrfs in a sparse file. */
export function kernelImage(img: string): void {
  sh('truncate', ['-s', '1G', img]);
  sh('mkfs.btrfs', ['-q', img]);
}

/** One seed's folder: the kernel's source and reference images made, the path of btrfs-ts's image. */
export function seedImages(work: string, seed: number): { dir: string; srcImg: string; refImg: string; ourImg: string } {
  const dir = join(work, `s${seed}`);
  mkdirSync(dir);
  const img = (name: string) => join(dir, `${name}.img`);
  kernelImage(img('src'));
  kernelImage(img('ref'));
  return { dir, srcImg: img('src'), refImg: img('ref'), ourImg: img('our') };
}
