import type { Command } from 'commander';
import { dumpStreamBytes } from '../../dump/index.js';
import { openInput, type ReadMeter } from '../../io/input.js';
import { BufferedOut } from '../../io/output.js';
import { withProgress, withProgressOptions } from '../progress.js';

export interface DumpCliOptions {
  file?: string;
  allStreams?: boolean;
  progress?: boolean;
}

/**
 * Shared by `dump` and `receive --dump`. Lines already parsed are printed before an error, as btrfs-progs
 * does, so a user sees how far a damaged stream is readable.
 */
export async function runDump(opts: DumpCliOptions): Promise<void> {
  await withProgress({ label: 'dump', flag: opts.progress, stdoutBusy: true }, (p) => dumpWith(opts, p));
}

async function dumpWith(opts: DumpCliOptions, meter: ReadMeter): Promise<void> {
  const out = new BufferedOut();
  const input = await openInput(opts.file, meter);
  try {
    await dumpStreamBytes(input, (bytes) => {
      out.pushBytes(bytes);
      // written once a buffer is full, so output stays bounded
      return out.maybeFlush();
    }, { allStreams: opts.allStreams ?? false });
  } catch (e) {
    await out.flush();
    throw e;
  }
  await out.flush();
}

export function register(program: Command): void {
  withProgressOptions(program
    .command('dump')
    .description('print the commands of a send stream exactly as `btrfs receive --dump` does')
    .option('-f, --file <FILE>', 'read the stream from FILE instead of stdin')
    .option('--all-streams', 'dump every stream of a multi-stream input (btrfs-progs stops after the first END)'))
    .action(async (o: DumpCliOptions) => {
      await runDump(o);
    });
}
