import { once } from 'node:events';
import { InvalidArgumentError, type Command } from 'commander';
import { BtrfsTsError } from '../../errors.js';
import { STREAM_FILE_MODE } from '../../io/file-sink.js';
import { openInput, type ReadMeter } from '../../io/input.js';
import { convertStream, type ConvertOptions, type ConvertStats } from '../../tools/convert.js';
import { parseUuid } from '../../tools/paths.js';
import { parseCompress, type CompressChoice } from '../options.js';
import { OutputFile } from '../output-file.js';
import { refuseOutputOverInput } from '../output-over-input.js';
import { withProgress, withProgressOptions } from '../progress.js';

interface ConvertCli {
  file?: string;
  output: string;
  proto?: 1 | 2;
  compress?: CompressChoice;
  parentUuid?: Uint8Array;
  subvolName?: string;
  progress?: boolean;
}

function parseProto(v: string): 1 | 2 {
  if (v !== '1' && v !== '2') throw new InvalidArgumentError('protocol must be 1 or 2');
  return Number(v) as 1 | 2;
}

function parseUuidArg(v: string): Uint8Array {
  const u = parseUuid(v);
  if (!u) throw new InvalidArgumentError('expected a uuid (32 hex digits, dashes optional)');
  return u;
}

export function register(program: Command): void {
  withProgressOptions(program
    .command('convert')
    .description('rewrite a stream: protocol 2 -> 1 (decompress), 1 -> 2 with --compress, re-parent or rename the subvolume')
    .option('-f, --file <IN>', 'read the stream from IN instead of stdin')
    .requiredOption('-o, --output <OUT>', 'write the converted stream to OUT (- for stdout)')
    .option('--proto <1|2>', 'output protocol version (default: the input\'s)', parseProto)
    .option('--compress <ALG[:LEVEL]>', 'compress WRITE data into ENCODED_WRITEs (zlib, lzo, zstd; implies --proto 2)', parseCompress)
    .option('--parent-uuid <UUID>', 'set the SNAPSHOT parent uuid (CLONEs from the old parent follow)', parseUuidArg)
    .option('--subvol-name <NAME>', 'set the SUBVOL/SNAPSHOT name'))
    .action(async (o: ConvertCli) => {
      // without an option the output would be the input again, reported as "converted"
      if (o.proto === undefined && !o.compress && !o.parentUuid && o.subvolName === undefined) {
        throw new BtrfsTsError('CONVERT_USAGE', 'nothing to convert: give --proto, --compress, --parent-uuid or --subvol-name');
      }
      refuseOutputOverInput(o.output, [o.file], 'CONVERT_USAGE', '-o');
      const opts: ConvertOptions = {
        onDrop: (what) => dropped.set(what, (dropped.get(what) ?? 0) + 1),
      };
      const dropped = new Map<string, number>();
      if (o.compress) {
        if (o.proto === 1) throw new BtrfsTsError('CONVERT_COMPRESS_V1', '--compress needs protocol 2');
        opts.compress = o.compress;
        opts.proto = 2;
      }
      if (o.proto !== undefined) opts.proto = o.proto;
      if (o.parentUuid) opts.parentUuid = o.parentUuid;
      if (o.subvolName !== undefined) opts.subvolName = Uint8Array.from(Buffer.from(o.subvolName));
      const stats: ConvertStats = { commandsIn: 0, commandsOut: 0, encodedOut: 0, dropped: 0 };
      // output on stdout: the progress line only when asked
      await withProgress({ label: 'convert', flag: o.progress, stdoutBusy: o.output === '-' }, (p) => run(o, opts, stats, p));
      const drops = [...dropped].map(([k, v]) => `${v} ${k}`).join(', ');
      process.stderr.write(`converted ${stats.commandsIn} commands into ${stats.commandsOut} (${stats.encodedOut} encoded writes)` +
        (drops ? `; left out: ${drops}` : '') + '\n');
    });
}

async function run(o: ConvertCli, opts: ConvertOptions, stats: ConvertStats, meter: ReadMeter): Promise<void> {
  const input = await openInput(o.file, meter);
  // opened before the stream is made, so a path that cannot be written is an error here
  let out: OutputFile | undefined;
  try {
    if (o.output !== '-') out = await OutputFile.open(o.output, 'stream', STREAM_FILE_MODE);
  } catch (e) {
    // the input file is closed now, not by the garbage collector (node warns on stderr when it does)
    await (input as { close?: () => Promise<void> }).close?.();
    throw e;
  }
  // standard output's own failures are the launcher's (bin/btrfs-ts.js)
  const write = (chunk: Uint8Array): Promise<void> | undefined => (out ? out.write(chunk) : process.stdout.write(chunk) ? undefined : once(process.stdout, 'drain').then(() => undefined));
  let converted = false;
  try {
    for await (const chunk of convertStream(input, opts, stats)) await write(chunk);
    converted = true;
  } finally {
    // a half-written stream must not be mistaken for a converted one: removed unless it got to its end
    await out?.close(converted);
  }
}
