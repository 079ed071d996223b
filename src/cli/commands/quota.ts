import type { Command } from 'commander';
import { rescanQgroups } from '../../tools/qgroup-rescan.js';

export function register(program: Command): void {
  const q = program.command('quota').description('quotas of a btrfs image');
  q.command('rescan')
    .description('what `btrfs quota rescan -w` does, without a mount: every quota group counted again and the quota status made consistent (a receive leaves it marked inconsistent)')
    .argument('<image>', 'btrfs image file with quotas enabled')
    .option('-w, --wait', 'accepted as btrfs quota rescan takes it: the rescan here is always finished when the command ends')
    .option('-q, --quiet', 'print nothing but errors')
    .action(async (image: string, o: { quiet?: boolean }) => {
      const rows = await rescanQgroups(image);
      if (!o.quiet) process.stderr.write(`quota rescan finished: ${rows.length} qgroup${rows.length === 1 ? '' : 's'} counted\n`);
    });
}
