import type { Command } from 'commander';
import { extractStreams } from '../../extract/stream.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export interface ExtractStreamCli {
  file: string[];
  owners: boolean;
  xattrs: boolean;
}

/**
 * Shared with `extract -f` (the image `extract` command forwards here when given -f), so both spellings
 * behave the same.
 */
export async function runExtractStream(dir: string, o: ExtractStreamCli): Promise<void> {
  const files = o.file.length ? o.file : ['-'];
  const r = await extractStreams(files, dir, {
    owners: o.owners && process.getuid?.() === 0,
    xattrs: o.xattrs,
  });
  process.stderr.write(`extracted ${r.received.length} subvolume(s) (${r.received.join(', ')}), ${r.commands} commands, ${r.dataBytes} data bytes` +
    (r.warnings ? `, ${r.warnings} warning(s)` : '') + '\n');
}

export function register(program: Command): void {
  program
    .command('extract-stream')
    .description('receive send streams into a plain directory on any filesystem (subvolumes become DIR/NAME; incrementals on top)')
    .option('-f, --file <STREAM>', 'stream file, repeatable: applied in order (default: stdin)', collect, [] as string[])
    .option('--no-owners', 'do not restore uid/gid even when root')
    .option('--no-xattrs', 'do not restore xattrs')
    .argument('<dir>', 'target directory (created if missing)')
    .action(async (dir: string, o: ExtractStreamCli) => {
      await runExtractStream(dir, o);
    });
}
