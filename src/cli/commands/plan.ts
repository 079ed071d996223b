import type { Command } from 'commander';
import { initCodecs } from '../../compress/index.js';
import { openInput } from '../../io/input.js';
import { BufferedOut } from '../../io/output.js';
import { PlanReceiver } from '../../plan/plan-receiver.js';
import type { ExtentPlan } from '../../plan/report.js';
import { processStream } from '../../stream/receiver.js';
import { parseCompress, parseIntArg, type CompressChoice } from '../options.js';
import { withProgress, withProgressOptions } from '../progress.js';

interface PlanCli {
  file?: string;
  json?: boolean;
  summary?: boolean;
  forceDecompress?: boolean;
  compress?: CompressChoice;
  sectorsize?: number;
  progress?: boolean;
}

function extentLine(e: ExtentPlan): string {
  const why = e.reasons.map((r) => r.code).join(',');
  const to = e.recompressedTo ? ` -> ${e.recompressedTo.codec} ${e.recompressedTo.diskBytes}` : '';
  return `${e.action.padEnd(13)}${e.codec.padEnd(6)}enc=${e.encodedLen} file=${e.fileLen} offset=${e.fileOffset} ${e.path} @${e.offset}${why ? ` reasons=${why}` : ''}${to}\n`;
}

const jsonReplacer = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);

export function register(program: Command): void {
  withProgressOptions(program
    .command('plan')
    .description('decide for every ENCODED_WRITE whether its compressed bytes pass through or must be decompressed, and why')
    .argument('[IMAGE]', 'image the stream would be received into (its sector size applies); not modified')
    .option('-f, --file <FILE>', 'read the stream from FILE instead of stdin')
    .option('--json', 'machine-readable output: every decision and the totals')
    .option('--summary', 'print only the totals')
    .option('--force-decompress', 'plan as `receive --force-decompress` would (decompress everything)')
    .option('--compress <ALG[:LEVEL]>', 'plan recompression of decompressed data (zlib, lzo, zstd)', parseCompress)
    .option('--sectorsize <N>', 'sector size of the target image when no IMAGE is given', parseIntArg, 4096))
    .action(async (image: string | undefined, o: PlanCli) => {
      await initCodecs();
      let sectorsize = o.sectorsize ?? 4096;
      if (image !== undefined) {
        const { imageSectorsize } = await import('../../io/image-info.js');
        sectorsize = await imageSectorsize(image);
      }
      const out = new BufferedOut();
      const extents: ExtentPlan[] = [];
      const r = new PlanReceiver({
        sectorsize,
        forceDecompress: o.forceDecompress ?? false,
        ...(o.compress ? { compress: o.compress } : {}),
        onExtent: (e) => {
          if (o.json) extents.push(e);
          else if (!o.summary) out.push(extentLine(e));
        },
      });
      await withProgress({ label: 'plan', flag: o.progress, stdoutBusy: true }, async (p) =>
        // the planner keeps nothing of a command past it (strings and numbers): a file is read through the window
        processStream(await openInput(o.file, p), r, { reuseInput: true, afterCommand: () => out.maybeFlush() }));
      if (o.json) {
        out.push(JSON.stringify({ sectorsize, extents: o.summary ? undefined : extents, totals: r.report.totals }, jsonReplacer, 2) + '\n');
      } else {
        out.push(r.report.format());
      }
      await out.flush();
    });
}
