import type { Command } from 'commander';
import { replay } from '../../replay/index.js';

export function register(program: Command): void {
  program
    .command('replay')
    .description('receive streams into a scratch image and compare the result with a stored manifest (CI check)')
    .requiredOption('-f, --file <STREAM>', 'stream to receive (repeat for a chain, in order)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .requiredOption('--expect <MANIFEST>', 'stored manifest of the expected tree (btrfs-ts manifest)')
    .option('--subvol <NAME>', 'received subvolume to compare (default: the last one)')
    .action(async (o: { file: string[]; expect: string; subvol?: string }) => {
      const r = await replay({ streams: o.file, expect: o.expect, ...(o.subvol !== undefined ? { subvol: o.subvol } : {}) });
      if (r.diffs.length) {
        process.stdout.write(r.report);
        process.exitCode = 1;
      } else {
        process.stdout.write(`replay of ${o.file.length} stream(s): ${r.compared} matches ${o.expect} (${r.entries} entries)\n`);
      }
    });
}
