import { closeSync, existsSync, openSync, readSync, statfsSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { initCodecs } from '../../compress/index.js';
import { createFilesystem } from '../../image/write/create.js';
import type { Filesystem } from '../../image/write/filesystem.js';
import { openFilesystem } from '../../image/write/open.js';
import type { PageStore } from '../../image/write/page-store.js';
import { FileDevice } from '../../io/image-file.js';
import { lockImage, refuseIfMounted } from '../../io/image-lock.js';
import { openInput } from '../../io/input.js';
import { DEFAULT_METADATA_CACHE, spillingPageStore, type SpillFile } from '../../io/spill-file.js';
import { PlanReport, size } from '../../plan/report.js';
import { receiveStreams, type ReceiveSummary } from '../../receive/index.js';
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

const MiB = 1n << 20n;

/** A missing image is made like `btrfs-ts mkfs` makes one (256 MiB, DUP metadata) and grows as needed. */
async function openOrCreate(image: string, o: ReceiveCli, pageStore: PageStore): Promise<{ fs: Filesystem; dev: FileDevice; created: boolean }> {
  const growth = { growable: true, maxSize: o.maxSize ?? hostLimit(image), pageStore };
  if (existsSync(image) && statSync(image).size > 0) {
    const dev = FileDevice.open(image);
    try {
      return { fs: await openFilesystem(dev, growth), dev, created: false };
    } catch (e) {
      dev.close();
      throw e;
    }
  }
  const initial = growth.maxSize < 256n * MiB ? growth.maxSize : 256n * MiB;
  const dev = FileDevice.create(image, initial);
  try {
    return { fs: createFilesystem(dev, growth), dev, created: true };
  } catch (e) {
    // nothing existed before: leave nothing (a half-made image is not a btrfs)
    dev.close();
    try { unlinkSync(image); } catch { /* keep the first error */ }
    throw e;
  }
}

/** A size from the environment, diagnosed like a bad option when it does not parse. */
function envSize(name: string): bigint | undefined {
  const v = process.env[name];
  if (!v) return undefined;
  try {
    return parseSize(v);
  } catch (e) {
    throw new ReceiveError('usage', `${name}: ${(e as Error).message}`);
  }
}

/**
 * An IMAGE that exists must be a regular file or a block device: anything else (a directory, a fifo) is
 * refused before the lock file is made beside it.
 */
function refuseIfNotImageFile(image: string): void {
  if (!existsSync(image)) return;
  const st = statSync(image);
  if (st.isFile() || st.isBlockDevice()) return;
  throw new ReceiveError('IMAGE_NOT_A_FILE', `${image}: ${st.isDirectory() ? 'is a directory' : 'not a regular file or block device'}, not a btrfs image`);
}

/** The generation of the primary superblock on disk (bytes 0x48.. of the copy at 64 KiB). */
function primaryGeneration(image: string): bigint | undefined {
  if (!existsSync(image)) return undefined;
  const fd = openSync(image, 'r');
  try {
    const b = Buffer.alloc(8);
    return readSync(fd, b, 0, 8, 0x10000 + 0x48) === 8 ? b.readBigUInt64LE(0) : undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Without --max-size the image grows at most by what the filesystem holding it has free, as a real
 * device fills up: a crafted FALLOCATE of petabytes then stops with IMAGE_FULL instead of growing a
 * sparse file and the extent tree for hours.
 */
function hostLimit(image: string): bigint {
  const s = statfsSync(dirname(resolve(image)), { bigint: true });
  return (existsSync(image) ? BigInt(statSync(image).size) : 0n) + s.bavail * s.bsize;
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

export function register(program: Command): void {
  withProgressOptions(program
    .command('receive')
    .description('apply send streams to a btrfs image file (created when missing), like `btrfs receive` does to a mounted btrfs')
    .argument('[IMAGE]', 'btrfs image file to receive into')
    .option('-f, --file <FILE>', 'read the stream from FILE instead of stdin')
    .option('--dump', 'print the stream instead of receiving it (like btrfs receive --dump)')
    .option('--all-streams', 'with --dump: dump every stream of the input')
    .option('-e', 'stop after the first END command')
    .option('--dest <PATH>', 'directory inside the image to create the subvolumes in (default: top level)')
    .option('--force-decompress', 'decompress every encoded write instead of storing it as sent')
    .option('--compress <ALG[:LEVEL]>', 'compress plain and decompressed data (zlib, lzo, zstd) as the compress= mount option', parseCompress)
    .option('--check-extents', 'decode every compressed extent before storing it (the kernel does not)')
    .option('--max-size <SIZE>', 'never grow the image past SIZE (K/M/G suffixes; default: its size plus the free space of the filesystem holding it)', parseSize)
    .option('--metadata-cache <SIZE>', 'memory for decoded metadata pages; the rest goes to a deleted temporary file beside the image (default 8M, or BTRFS_TS_METADATA_CACHE)', parseSize)
    .option('-q, --quiet', 'print nothing but errors')
    .option('-v, --verbose', 'print what btrfs receive -v prints (subvolume uuids, writes, clones) and a summary at the end; -vv every command', (_v: string, n: number) => n + 1, 0)
    .option('--json', 'print the summary as JSON'))
    .action(async (image: string | undefined, o: ReceiveCli) => {
      if (o.dump) {
        await runDump({ ...(o.file !== undefined ? { file: o.file } : {}), allStreams: o.allStreams ?? false });
        return;
      }
      if (image === undefined) throw new ReceiveError('usage', 'receive needs an IMAGE (or --dump)');
      await initCodecs();
      refuseIfNotImageFile(image);
      refuseIfMounted(image);
      const unlock = lockImage(image);
      const started = Date.now();
      const progress = new Progress({ label: 'receive', flag: o.progress, quiet: o.quiet || o.json });
      let opened: Awaited<ReturnType<typeof openOrCreate>> | undefined;
      let spill: SpillFile | undefined;
      let committed = false;
      // the device may grow during a receive; if nothing gets committed, the growth is dropped again
      let sizeBefore: number;
      let genBefore: bigint | undefined;
      try {
        sizeBefore = existsSync(image) ? statSync(image).size : 0;
        genBefore = primaryGeneration(image);
      } catch (e) {
        unlock();
        throw e;
      }
      let shrink = false;
      // Ctrl-C / SIGTERM: stop after the command being applied, through the error path below (lock
      // released, nothing half-committed, a new image removed); a second signal exits at once
      let stopBy: NodeJS.Signals | undefined;
      let input: AsyncIterable<Uint8Array> | undefined;
      const onSignal = (sig: NodeJS.Signals) => {
        if (stopBy) process.exit(130);
        stopBy = sig;
        // a receive waiting for more input (a pipe) sees the stop as a read error
        const r = input as { destroy?: (e: Error) => void } | undefined;
        r?.destroy?.(new ReceiveError('interrupted', `stopped by ${sig} while waiting for input; the subvolume being received is not committed`));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const cache = o.metadataCache ?? envSize('BTRFS_TS_METADATA_CACHE') ?? BigInt(DEFAULT_METADATA_CACHE);
        const pages = spillingPageStore(dirname(resolve(image)), Number(cache));
        spill = pages.spill;
        opened = await openOrCreate(image, o, pages.store);
        input = await openInput(o.file, progress);
        let lastYield = Date.now();
        const level = o.quiet || o.json ? 0 : Math.min(1 + (o.verbose ?? 0), 3) as 1 | 2 | 3;
        const s = await receiveStreams(input, opened.fs, {
          ...(o.dest !== undefined ? { dest: o.dest } : {}),
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
          onSubvolumeDone: () => {
            committed = true;
          },
          afterCommand: (res) => {
            if (stopBy) {
              throw new ReceiveError('interrupted', `stopped by ${stopBy}; the subvolume being received is not committed`, { offset: res.bytes, commandIndex: res.commands });
            }
            const now = Date.now();
            // commands already buffered are applied without returning to the event loop; let signal
            // handlers run now and then
            if (now - lastYield >= 50) {
              lastYield = now;
              return new Promise<void>((r) => setImmediate(r));
            }
            progress.detail = `${res.commands} commands`;
            progress.tick();
          },
        });
        progress.clear();
        const secs = (Date.now() - started) / 1000;
        if (o.json) {
          const metadata = { cache: Number(cache), ...pages.store.stats, spillFileBytes: pages.store.spillSize };
          process.stdout.write(JSON.stringify({ ...s, seconds: secs, metadata, subvolumes: s.subvolumes.map((v) => ({ ...v, receivedUuid: formatUuid(v.receivedUuid), parentUuid: v.parentUuid && formatUuid(v.parentUuid) })) },
            (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
        } else if (o.verbose) {
          process.stderr.write(summaryText(s, secs));
        }
      } catch (e) {
        progress.clear();
        // an image this run created and never committed anything to is removed: nothing existed before
        if (opened?.created && !committed) {
          opened.dev.close();
          opened = undefined;
          try { unlinkSync(image); } catch { /* keep going */ }
        }
        shrink = opened !== undefined && !committed;
        throw e;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        opened?.dev.close();
        spill?.close();
        // only when the superblock on disk is the old one: a commit may have reached it before failing
        if (shrink && statSync(image).size > sizeBefore && primaryGeneration(image) === genBefore) truncateSync(image, sizeBefore);
        unlock();
      }
    });
}
