import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
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
