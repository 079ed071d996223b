import type { Command } from 'commander';
import { BtrfsImage, type SubvolumeInfo } from '../../image/read/index.js';
import { formatUuid } from '../../image/structs.js';
import { readImage } from '../image-file.js';

const uuid = (u: Uint8Array): string => (u.every((b) => b === 0) ? '-' : formatUuid(u));

/** One line in `btrfs subvolume list -g -c -u -q -R` order and spelling, plus flags. */
export function subvolumeLine(s: SubvolumeInfo): string {
  return `ID ${s.id} gen ${s.generation} cgen ${s.otransid} top level ${s.parent} parent_uuid ${uuid(s.parentUuid).padEnd(36)} ` +
    `received_uuid ${uuid(s.receivedUuid).padEnd(36)} uuid ${uuid(s.uuid).padEnd(36)} ` +
    `ctransid ${s.ctransid} stransid ${s.stransid} rtransid ${s.rtransid} ${s.readonly ? 'ro' : 'rw'} path ${s.path}`;
}

export function register(program: Command): void {
  const sub = program.command('subvolume').description('subvolumes of a btrfs image');
  sub
    .command('list')
    .description('list the subvolumes of an image (like `btrfs subvolume list -g -c -u -q -R`, plus transids and ro/rw)')
    .argument('<image>', 'btrfs image file')
    .option('-r, --readonly', 'only read-only subvolumes')
    .action(async (image: string, o: { readonly?: boolean }) => {
      await readImage(image, async (src) => {
        const img = await BtrfsImage.open(src);
        for (const s of await img.listSubvolumes()) {
          if (s.id === 5n || (o.readonly && !s.readonly)) continue;
          process.stdout.write(subvolumeLine(s) + '\n');
        }
      });
    });
}
