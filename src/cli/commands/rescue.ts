import type { Command } from 'commander';
import { rekeySnapshots } from '../../tools/snapshot-keys.js';

export function register(program: Command): void {
  const r = program.command('rescue').description('repairs of what an earlier btrfs-ts wrote into an image');
  r.command('fix-snapshot-keys')
    .description('rekey the subvolumes an earlier btrfs-ts received as incrementals, so that the kernel can delete them without damage (any btrfs-ts change to the image does it too; `subvolume list` warns when it is needed)')
    .argument('<image>', 'btrfs image file')
    .option('-q, --quiet', 'print nothing but errors')
    .action(async (image: string, o: { quiet?: boolean }) => {
      const fixed = await rekeySnapshots(image);
      if (o.quiet) return;
      if (fixed.length === 0) process.stdout.write('no subvolume to rekey\n');
      for (const s of fixed) process.stdout.write(`rekeyed subvolume ${s.id} (${s.path}): ROOT_ITEM offset ${s.keyOffset} -> ${s.keyOffset - 1n}\n`);
    });
}
