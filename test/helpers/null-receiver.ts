import type { Receiver } from '../../src/stream/receiver.js';

const NAMES = ['subvol', 'snapshot', 'mkfile', 'mkdir', 'mknod', 'mkfifo', 'mksock', 'symlink', 'rename', 'link',
  'unlink', 'rmdir', 'setXattr', 'removeXattr', 'write', 'clone', 'truncate', 'chmod', 'chown', 'utimes',
  'updateExtent', 'fallocate', 'fileattr', 'encodedWrite', 'enableVerity', 'end'] as const;

/** A receiver that accepts every known command and counts them; unknown commands are refused. */
export function countingReceiver(): Receiver & { counts: Map<string, number> } {
  const counts = new Map<string, number>();
  const r = { counts } as Record<string, unknown>;
  for (const n of NAMES) r[n] = () => { counts.set(n, (counts.get(n) ?? 0) + 1); };
  return r as unknown as Receiver & { counts: Map<string, number> };
}
