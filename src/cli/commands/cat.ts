import type { Command } from 'commander';
import { ImageError } from '../../errors.js';
import { BtrfsImage } from '../../image/read/index.js';
import { degradedOption, deviceOption, devicesOf, readImage } from '../image-file.js';

export function register(program: Command): void {
  program
    .command('cat')
    .description('write a file from a btrfs image to stdout (data checksums verified, compressed extents decoded)')
    .argument('<image>', 'btrfs image file')
    .argument('<path>', 'file path inside the image, from the top-level subvolume')
    .option('--no-verify', 'do not verify data checksums')
    .addOption(deviceOption())
    .addOption(degradedOption())
    .action(async (image: string, path: string, o: { verify: boolean; device: string[]; degraded?: boolean }) => {
      await readImage(image, async (src) => {
        const img = await BtrfsImage.open(src);
        const loc = await img.resolve(path);
        const st = await img.stat(loc);
        const type = st.mode & 0o170000;
        if (type === 0o120000) {
          process.stdout.write(Buffer.from(await img.readlink(loc)));
          return;
        }
        if (type !== 0o100000) throw new ImageError('IMAGE_NOT_FILE', `${path} is not a regular file`, { path });
        for await (const c of img.readFile(loc, { verify: o.verify })) {
          if (!process.stdout.write(c)) await new Promise<void>((r) => process.stdout.once('drain', () => r()));
        }
      }, devicesOf(o));
    });
}
