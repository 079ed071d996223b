import { type Command, InvalidArgumentError } from 'commander';
import { initCodecs } from '../../compress/index.js';
import { openInput } from '../../io/input.js';
import { PlanReport } from '../../plan/report.js';
import { size } from '../../util/size.js';
import { receiveIntoImage } from '../../receive/image-file.js';
import type { ReceiveSummary } from '../../receive/index.js';
import { formatUuid } from '../../util/uuid.js';
import { ReceiveError } from '../../errors.js';
import { parseCompress, parseSize, type CompressChoice } from '../options.js';
import { Progress, withProgressOptions } from '../progress.js';
import { runDump } from './dump.js';

interface ReceiveCli {
  file?: string;
  dump?: boolean;
  e?: boolean;
  dest?: string;
  forceDecompress?: boolean;
  compress?: CompressChoice;
  checkExtents?: boolean;
  maxSize?: bigint;
  quiet?: boolean;
  verbose?: number;
  progress?: boolean;
  json?: boolean;
  allStreams?: boolean;
  metadataCache?: bigint;
}

/** A size from the environment, diagnosed like a bad option when it does not parse. */
function envSize(name: string): bigint | undefined {
  const v = process.env[name];
  if (!v) return undefined;
  try {
    return parseSize(v);
  } catch (e) {
    throw new ReceiveError('USAGE', `${name}: ${(e as Error).message}`);
  }
}

function summaryText(s: ReceiveSummary, seconds: number): string {
  const r = new PlanReport();
  Object.assign(r.totals, s.plan);
  const subs = s.subvolumes.map((v) => `  ${v.name}: id ${v.rootid}, received uuid ${formatUuid(v.receivedUuid)}, stransid ${v.stransid}`);
  return [
    `received ${s.subvolumes.length} subvolume(s) from ${s.streams} stream(s), ${s.commands} commands, ${size(s.bytes)} in ${seconds.toFixed(2)} s`,
    ...subs,
    `extents written: ${s.extents.extents} (${s.extents.compressed} compressed, ${s.extents.inline} inline), ${size(s.extents.bytes)} of file data`,
    r.format().trimEnd(),
  ].join('\n') + '\n';
}

/**
 * btrfs receive -E N goes on past N-1 failed commands (0: past all of them), leaving what they should have
 * made undone. A receive here applies a stream whole or not at all (the image is left as it was), so
 * going on has no meaning: only the default is taken, and a script asking for more is told why.
 */
function parseMaxErrors(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('expected a number of errors');
  if (Number(v) !== 1) throw new InvalidArgumentError('btrfs-ts stops at the first error and leaves the image as it was before the stream; only 1 (the default) is accepted');
  return 1;
}

export function register(program: Command): void {
  withProgressOptions(program
    .command('receive')
    .description('apply send streams to a btrfs image file (created when missing), like `btrfs receive` does to a mounted btrfs')
    .argument('[IMAGE]', 'btrfs image file to receive into')
    .option('-f, --file <FILE>', 'read the stream from FILE instead of stdin')
    .option('--dump', 'print the stream instead of receiving it (like btrfs receive --dump)')
    .option('--all-streams', 'with --dump: dump every stream of the input')
    .option('-e', 'stop after the first END command')
    .option('-C, --chroot', 'accepted as btrfs receive takes it: a receive into an image never reaches outside the subvolumes it makes')
    .option('-E, --max-errors <N>', 'as btrfs receive: only 1, the default, is accepted — a receive stops at the first error and rolls the stream back whole', parseMaxErrors)
    .option('-m <ROOTMOUNT>', 'accepted as btrfs receive takes it (where the destination is mounted): an image needs no mount')
    .option('--dest <PATH>', 'directory inside the image to create the subvolumes in (default: top level)')
    .option('--force-decompress', 'decompress every encoded write instead of storing it as sent')
    .option('--compress <ALG[:LEVEL]>', 'compress plain and decompressed data (zlib, lzo, zstd) as the compress= mount option', parseCompress)
    .option('--check-extents', 'decode every compressed extent before storing it (the kernel does not)')
    .option('--max-size <SIZE>', 'never grow the image past SIZE (K/M/G suffixes; default: its size plus the free space of the filesystem holding it)', parseSize)
    .option('--metadata-cache <SIZE>', 'memory for decoded tree blocks; past it clean blocks are dropped and read again, changed ones written early to their new place in the image (default 32M, or BTRFS_TS_METADATA_CACHE)', parseSize)
    .option('-q, --quiet', 'print nothing but errors')
    .option('-v, --verbose', 'print what btrfs receive -v prints (subvolume uuids, writes, clones) and a summary at the end; -vv every command', (_v: string, n: number) => n + 1, 0)
    .option('--json', 'print the summary as JSON'))
    .action(async (image: string | undefined, o: ReceiveCli) => {
      if (o.dump) {
        await runDump({ ...(o.file !== undefined ? { file: o.file } : {}), allStreams: o.allStreams ?? false });
        return;
      }
      if (image === undefined) throw new ReceiveError('USAGE', 'receive needs an IMAGE (or --dump)');
      // the codecs' WebAssembly (where compressing, or where the addon cannot decode zstd) compiles on V8's
      // background threads while the image is opened; receiveStreams awaits the same promise (a failure to
      // load is reported there)
      initCodecs({ decodeOnly: !o.compress }).catch(() => undefined);
      const started = Date.now();
      const progress = new Progress({ label: 'receive', flag: o.progress, quiet: o.quiet || o.json });
      // Ctrl-C / SIGTERM: stop after the command being applied, through the error path of the receive
      // (lock released, nothing half-committed, a new image removed); a second signal exits at once
      let stopBy: NodeJS.Signals | undefined;
      let input: AsyncIterable<Uint8Array> | undefined;
      const onSignal = (sig: NodeJS.Signals) => {
        if (stopBy) process.exit(130);
        stopBy = sig;
        // a receive waiting for more input (a pipe) sees the stop as a read error
        const r = input as { destroy?: (e: Error) => void } | undefined;
        r?.destroy?.(new ReceiveError('INTERRUPTED', `stopped by ${sig} while waiting for input; the subvolume being received is not committed`));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const cache = o.metadataCache ?? envSize('BTRFS_TS_METADATA_CACHE');
        let lastYield = Date.now();
        const level = o.quiet || o.json ? 0 : Math.min(1 + (o.verbose ?? 0), 3) as 1 | 2 | 3;
        // opened once the image is locked and open (a refused image leaves no input open)
        const s = await receiveIntoImage(image, async () => (input = await openInput(o.file, progress)), {
          ...(o.dest !== undefined ? { dest: o.dest } : {}),
          ...(o.maxSize !== undefined ? { maxSize: o.maxSize } : {}),
          ...(cache !== undefined ? { metadataCache: Number(cache) } : {}),
          forceDecompress: o.forceDecompress ?? false,
          checkExtents: o.checkExtents ?? false,
          ...(o.compress ? { compress: o.compress } : {}),
          stopAfterFirstEnd: o.e ?? false,
          trace: {
            level,
            // "At snapshot" goes to stdout as btrfs-progs prints it (pr_verbose), the rest to stderr
            write: (line, toStdout) => {
              progress.clear();
              (toStdout ? process.stdout : process.stderr).write(Buffer.from(line, 'latin1'));
            },
          },
          afterCommand: (res) => {
            if (stopBy) {
              throw new ReceiveError('INTERRUPTED', `stopped by ${stopBy}; the subvolume being received is not committed`, { offset: res.bytes, commandIndex: res.commands });
            }
            const now = Date.now();
            // commands already buffered are applied without returning to the event loop; let signal
            // handlers run now and then
            if (now - lastYield >= 50) {
              lastYield = now;
              return new Promise<void>((r) => setImmediate(r));
            }
            // not built per command when nothing is drawn (a string per command of a 50k-file receive)
            if (progress.enabled) {
              progress.detail = `${res.commands} commands`;
              progress.tick();
            }
          },
        });
        progress.finish();
        progress.clear();
        const secs = (Date.now() - started) / 1000;
        if (o.json) {
          process.stdout.write(JSON.stringify({ ...s, seconds: secs, subvolumes: s.subvolumes.map((v) => ({ ...v, receivedUuid: formatUuid(v.receivedUuid), parentUuid: v.parentUuid && formatUuid(v.parentUuid) })) },
            (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
        } else if (o.verbose) {
          process.stderr.write(summaryText(s, secs));
        }
      } finally {
        progress.clear();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
