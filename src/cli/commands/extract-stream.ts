import type { Command } from 'commander';
import { statSync } from 'node:fs';
import { extractStreams } from '../../extract/stream.js';
import { withProgress, withProgressOptions } from '../progress.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export interface ExtractStreamCli {
  file: string[];
  owners: boolean;
  xattrs: boolean;
  progress?: boolean;
}

/**
 * Shared with `extract -f` (the image `extract` command forwards here when given -f), so both spellings
 * behave the same.
 */
export async function runExtractStream(dir: string, o: ExtractStreamCli): Promise<void> {
  const files = o.file.length ? o.file : ['-'];
  const r = await withProgress({ label: 'extract-stream', flag: o.progress }, (p) => {
    // one bar over all the files: their sizes summed once (a pipe's is unknown)
    const sizes = files.map((f) => { try { return f === '-' ? undefined : statSync(f).size; } catch { return undefined; } });
    p.setTotal(sizes.every((s) => s !== undefined) ? sizes.reduce((a, b) => a + b, 0) : undefined);
    return extractStreams(files, dir, {
      owners: o.owners && process.getuid?.() === 0,
      xattrs: o.xattrs,
      meter: { setTotal: () => undefined, advance: (n) => p.advance(n) },
      warn: (m) => {
        p.clear();
        process.stderr.write(`btrfs-ts: WARNING: ${m}\n`);
      },
    });
  });
  process.stderr.write(`extracted ${r.received.length} subvolume(s) (${r.received.join(', ')}), ${r.commands} commands, ${r.dataBytes} data bytes` +
    (r.warnings ? `, ${r.warnings} warning(s)` : '') + '\n');
}

export function register(program: Command): void {
  withProgressOptions(program
    .command('extract-stream')
    .description('receive send streams into a plain directory on any filesystem (subvolumes become DIR/NAME; incrementals on top)')
    .option('-f, --file <STREAM>', 'stream file, repeatable: applied in order (default: stdin)', collect, [] as string[])
    .option('--no-owners', 'do not restore uid/gid even when root')
    .option('--no-xattrs', 'do not restore xattrs')
    .argument('<dir>', 'target directory (created if missing)'))
    .action(async (dir: string, o: ExtractStreamCli) => {
      await runExtractStream(dir, o);
    });
}
