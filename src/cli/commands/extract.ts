import type { Command } from 'commander';
import { BtrfsTsError } from '../../errors.js';
import { runExtractStream } from './extract-stream.js';
import { BtrfsImage } from '../../image/read/index.js';
import { splitImageArg } from '../../io/image-read-file.js';
import { degradedOption, deviceOption, devicesOf, readImage } from '../image-file.js';
import { extractTree } from '../../extract/image.js';
import { withProgress, withProgressOptions } from '../progress.js';

export function register(program: Command): void {
  withProgressOptions(program
    .command('extract')
    .description('copy a directory tree out of a btrfs image (modes, times, xattrs, links, special files; owners when root)')
    .argument('<source>', 'IMAGE or IMAGE:PATH (a directory, whose contents are copied, or a single file); with -f: the destination DIR')
    .argument('[dir]', 'destination directory (created; must be empty)')
    .option('-f, --file <STREAM>', 'extract send streams (repeatable, in order) into DIR instead: same as extract-stream',
      (v: string, p: string[]) => [...p, v], [] as string[])
    .option('--no-owners', 'do not restore uid/gid even when root')
    .option('--no-xattrs', 'do not restore xattrs')
    .addOption(deviceOption())
    .addOption(degradedOption()))
    .action(async (source: string, dir: string | undefined, o: { owners: boolean; xattrs: boolean; file: string[]; progress?: boolean; device: string[]; degraded?: boolean }) => {
      // `extract -f STREAM... DIR`: the one positional argument is the destination
      if (o.file.length) {
        if (dir !== undefined) throw new BtrfsTsError('USAGE', 'extract -f STREAM takes one directory argument');
        await runExtractStream(source, o);
        return;
      }
      if (dir === undefined) throw new BtrfsTsError('USAGE', 'extract IMAGE[:PATH] DIR: missing destination directory');
      const { image, path } = await splitImageArg(source);
      await readImage(image, async (src) => {
        const img = await BtrfsImage.open(src);
        const start = await img.resolve(path);
        const owners = o.owners && process.getuid?.() === 0;
        const last = path.split('/').filter((x) => x !== '').pop();
        let entries = 0;
        const st = await withProgress({ label: 'extract', flag: o.progress }, (p) => extractTree(img, start, dir, {
          owners, xattrs: o.xattrs, ...(last ? { name: new TextEncoder().encode(last) } : {}),
          onData: (n) => p.advance(n),
          onEntry: () => {
            p.detail = `${++entries} entries`;
            p.tick();
          },
          warn: (m) => {
            p.clear();
            process.stderr.write(`btrfs-ts: WARNING: ${m}\n`);
          },
        }));
        process.stderr.write(`extracted ${st.files} files, ${st.dirs} dirs, ${st.symlinks} symlinks, ${st.hardlinks} hard links, ${st.specials} special files` +
          (st.skipped ? `, ${st.skipped} skipped` : '') + '\n');
      }, devicesOf(o));
    });
}
