import { rmSync } from 'node:fs';
import { EXIT_INTERRUPTED } from './failure.js';

/**
 * Ctrl-C and SIGTERM in commands that have no way to stop cleanly of their own (receive has: it rolls back
 * at the next command): the process ends at once with one line and status 130, as a shell reports a SIGINT
 * death. `detail` says what was done about the command's output.
 */
export function stopNow(sig: NodeJS.Signals, detail?: string): never {
  process.stderr.write(`btrfs-ts: ERROR: stopped by ${sig}${detail ? `; ${detail}` : ''} [INTERRUPTED]\n`);
  process.exit(EXIT_INTERRUPTED);
}

/**
 * Until the returned function is called, an interruption removes `path` — a stream or image this command
 * is still writing — before stopping: cut short, it would look usable, and the command's other failures
 * remove it too (send -f, convert -o, mkfs of a new image). `what` names it in the line ("stream").
 */
export function removeOnInterrupt(path: string, what: string): () => void {
  const onSignal = (sig: NodeJS.Signals): void => {
    let detail = `the partial ${what} ${path} is removed`;
    try {
      rmSync(path, { force: true });
    } catch (e) {
      detail = `the partial ${what} ${path} could not be removed (${(e as Error).message})`;
    }
    stopNow(sig, detail);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
