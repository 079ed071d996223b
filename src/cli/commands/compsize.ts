import type { Command } from 'commander';
import { BtrfsImage } from '../../image/read/index.js';
import { compsize, formatCompsize } from '../../tools/compsize.js';
import { degradedOption, deviceOption, devicesOf, readImage } from '../image-file.js';

export function register(program: Command): void {
  program
    .command('compsize')
    .description('what compsize prints for files and directories of a btrfs image (no mount needed): disk usage, uncompressed and referenced bytes per compression type')
    .argument('<image>', 'btrfs image file')
    .argument('[path...]', 'files or directories inside the image, from the top-level subvolume (default: all of it)')
    .option('-b, --bytes', 'display raw bytes instead of human-readable sizes')
    .option('-x, --one-file-system', 'do not cross into other subvolumes (each its own filesystem on a mount)')
    .addOption(deviceOption())
    .addOption(degradedOption())
    .action(async (image: string, paths: string[], o: { bytes?: boolean; oneFileSystem?: boolean; device: string[]; degraded?: boolean }) => {
      await readImage(image, async (src) => {
        const img = await BtrfsImage.open(src);
        const r = formatCompsize(await compsize(img, paths.length ? paths : ['/'], o.oneFileSystem === true), o.bytes === true);
        if (r.out !== undefined) process.stdout.write(r.out);
        else {
          // compsize's own words and status when nothing has data
          process.stderr.write(r.err!);
          process.exitCode = 1;
        }
      }, devicesOf(o));
    });
}
