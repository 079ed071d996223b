import type { Command } from 'commander';
import { BtrfsImage } from '../../image/read/index.js';
import { qgroupUsage } from '../../tools/qgroup-usage.js';
import { degradedOption, deviceOption, devicesOf, readImage } from '../image-file.js';
import { formatQgroupShow } from '../qgroup-show.js';

export function register(program: Command): void {
  const q = program.command('qgroup').description('quota groups of a btrfs image');
  q.command('show')
    .description('what `btrfs qgroup show` prints after a quota rescan: each subvolume\'s referenced and exclusive bytes (counted here, quotas on or not)')
    .argument('<image>', 'btrfs image file')
    .option('-p', 'print the parent qgroup ids')
    .option('-c', 'print the child qgroup ids')
    .option('-r', 'print the referenced limit')
    .option('-e', 'print the exclusive limit')
    .option('--raw', 'sizes in bytes')
    .addOption(deviceOption())
    .addOption(degradedOption())
    .action(async (image: string, o: { p?: boolean; c?: boolean; r?: boolean; e?: boolean; raw?: boolean; device: string[]; degraded?: boolean }) => {
      await readImage(image, async (src) => {
        const img = await BtrfsImage.open(src);
        // (the kernel replays a tree log at mount, before any rescan counts)
        if (img.hasLogTree) process.stderr.write(`btrfs-ts: WARNING: ${image} has a tree log not replayed yet: counted as its last commit left the trees\n`);
        // (their trees and their groups are left out: the kernel's cleaner drops them at the next mount)
        const dead = await img.deletedSubvolumes();
        if (dead.length) process.stderr.write(`btrfs-ts: WARNING: ${dead.length} deleted subvolume${dead.length === 1 ? '' : 's'} not cleaned up yet (id ${dead.map((d) => d.id).join(', ')}): counted as if already dropped\n`);
        process.stdout.write(formatQgroupShow(await qgroupUsage(img, dead.map((d) => d.id)), { parent: o.p, child: o.c, maxReferenced: o.r, maxExclusive: o.e, raw: o.raw }));
      }, devicesOf(o));
    });
}
