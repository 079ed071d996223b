import { promises as fsp } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { BtrfsTsError } from '../../errors.js';
import { imageTreeSource } from '../../image/read/tree-source.js';
import { BtrfsImage } from '../../image/read/index.js';
import { degradedOption, deviceOption, devicesOf, openForReading } from '../image-file.js';
import { dirTreeSource } from '../../dirtree/source.js';
import { diffManifests, renderDiff } from '../../manifest/compare.js';
import { formatManifest } from '../../manifest/format.js';
import type { ManifestOptions, TreeSource } from '../../manifest/types.js';
import { OutputFile } from '../output-file.js';
import { refuseOutputOverInput } from '../output-over-input.js';

interface Opts {
  atime?: boolean;
  nlink?: boolean;
  xattrs: boolean;
  skipXattr: string[];
  expect?: string;
  output?: string;
  path?: string;
  device: string[];
  degraded?: boolean;
}

/**
 * A directory is walked through the mounted filesystem; a regular file (or block device) is read as a
 * btrfs image without mounting it, starting at `--path` inside its top-level subvolume.
 */
async function openSource(target: string, o: Opts): Promise<{ source: TreeSource; close: () => Promise<void> }> {
  const st = await fsp.stat(target).catch((e: unknown) => {
    throw new BtrfsTsError('TREE_OPEN', `cannot read ${target}: ${String(e)}`);
  });
  if (st.isDirectory()) {
    const imageOnly = o.path !== undefined ? '--path' : o.device.length ? '--device' : o.degraded ? '--degraded' : undefined;
    if (imageOnly) throw new BtrfsTsError('MANIFEST_USAGE', `${imageOnly} applies to an image file, not a directory`);
    return { source: dirTreeSource(target, { xattrs: o.xattrs }), close: async () => {} };
  }
  const file = await openForReading(target, devicesOf(o));
  try {
    const img = await BtrfsImage.open(file);
    const start = await img.resolve(o.path ?? '');
    return { source: imageTreeSource(img, start), close: () => file.close() };
  } catch (e) {
    await file.close();
    throw e;
  }
}

async function writeLine(out: Writable, line: string): Promise<void> {
  if (!out.write(line + '\n')) await new Promise<void>((r) => out.once('drain', () => r()));
}

export function register(program: Command): void {
  program
    .command('manifest')
    .description('print a canonical, sorted listing of a directory tree (see docs/manifest.md)')
    .argument('<dir>', 'directory to list (e.g. a received subvolume), or a btrfs image file to read unmounted')
    .option('--path <path>', 'with an image: the directory inside the top-level subvolume to list (default: all of it)')
    .option('--atime', 'include atime (off by default: reading a tree on a rw mount can change it)')
    .option('--nlink', 'include the link count of every entry (directories differ between filesystems)')
    .option('--no-xattrs', 'do not read xattrs (no getfattr needed)')
    .option('--skip-xattr <prefix>', 'leave out xattrs whose name starts with prefix (repeatable)',
      (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--expect <file>', 'compare with a stored manifest; print the differences and exit 1 if any')
    .option('-o, --output <file>', 'write the manifest to a file instead of stdout')
    .addOption(deviceOption())
    .addOption(degradedOption())
    .action(async (dir: string, o: Opts) => {
      refuseOutputOverInput(o.output, [dir, ...o.device], 'MANIFEST_USAGE', '-o');
      const mopts: ManifestOptions = { atime: o.atime === true, nlink: o.nlink === true, skipXattrPrefixes: o.skipXattr };
      const { source, close } = await openSource(dir, o);
      try {
        await emit(formatManifest(source, mopts), dir, o);
      } finally {
        await close();
      }
    });
}

/** Prints the manifest, or with --expect compares it and sets exit code 1 on any difference. */
async function emit(lines: AsyncGenerator<string>, dir: string, o: Opts): Promise<void> {
  if (o.expect !== undefined) {
    const expectedText = await fsp.readFile(o.expect, 'latin1').catch((e: unknown) => {
      throw new BtrfsTsError('MANIFEST_EXPECT', `cannot read ${o.expect}: ${String(e)}`);
    });
    const actual: string[] = [];
    for await (const l of lines) actual.push(l);
    const diffs = diffManifests(expectedText.split('\n'), actual);
    if (diffs.length > 0) {
      process.stdout.write(renderDiff(diffs, o.expect, dir));
      process.exitCode = 1;
    } else {
      process.stdout.write(`manifest of ${dir} matches ${o.expect} (${actual.length} entries)\n`);
    }
    return;
  }
  if (o.output === undefined) {
    for await (const l of lines) await writeLine(process.stdout, l);
    return;
  }
  const out = await OutputFile.open(o.output, 'manifest');
  let done = false;
  try {
    for await (const l of lines) await out.write(l + '\n');
    done = true;
  } finally {
    await out.close(done);
  }
}
