import * as nodefs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ImageError } from '../../errors.js';
import { csumTypeByName, loadCsum } from '../../image/structs/csum.js';
import { createFilesystem, derivedUuid, shrinkToChunks } from '../../image/write/create.js';
import { listFeatures, parseFeatures } from './mkfs-features.js';
import { type ExtentCompressor, Populator } from '../../image/write/populate.js';
import { parseDeviceTable } from '../../dirtree/device-table.js';
import { probeFilesystem } from '../../io/fs-signature.js';
import { FileDevice } from '../../io/image-file.js';
import { populateFromDir, type RootdirSummary, type SubvolSpec, surveyRootdir } from '../../dirtree/rootdir.js';
import { parseInodeFlags } from '../../dirtree/inode-flags.js';
import { Reflinker } from '../../dirtree/reflink.js';
import { refuseIfMounted } from '../../io/image-lock.js';
import { formatUuid, parseUuid } from '../../util/uuid.js';
import { removeOnInterrupt } from '../interrupt.js';
import { parseCompress, parseSize as parseSizeOption } from '../options.js';
import { withProgress, withProgressOptions } from '../progress.js';

interface Opts {
  rootdir?: string;
  byteCount?: string;
  compress?: string;
  label?: string;
  sectorsize?: string;
  nodesize?: string;
  metadata?: string;
  csum?: string;
  uuid?: string;
  deviceUuid?: string;
  features?: string[];
  runtimeFeatures?: string[];
  data?: string;
  mixed?: boolean;
  subvol?: string[];
  deviceTable?: string;
  force?: boolean;
  quiet?: boolean;
  shrink?: boolean;
  inodeFlags?: string[];
  reflink?: boolean;
  progress?: boolean;
}

const MiB = 1n << 20n;

/** The receive options' parsers, with their errors reported as mkfs usage errors. */
function usage<T>(what: string, parse: (v: string) => T, v: string): T {
  try {
    return parse(v);
  } catch (e) {
    throw new ImageError('MKFS_USAGE', `${what}: ${(e as Error).message}`);
  }
}

export function parseSize(s: string): bigint {
  return usage('size', parseSizeOption, s);
}

async function makeCompressor(spec: string, sectorsize: number): Promise<ExtentCompressor> {
  const { type, level } = usage('--compress', parseCompress, spec);
  // mkfs.btrfs takes zstd levels 1..15 only (the kernel's mount option also takes negative ones)
  if (level !== undefined && level < 1) throw new ImageError('MKFS_USAGE', `--compress: bad level ${level}`);
  const codecs = await import('../../compress/index.js');
  await codecs.initCodecs();
  return { type, compress: (data) => codecs.compressExtent(type, data, sectorsize, level) };
}

function uuidOption(what: string, v: string | undefined): Uint8Array | undefined {
  if (v === undefined) return undefined;
  const u = parseUuid(v);
  if (!u) throw new ImageError('MKFS_USAGE', `${what}: ${JSON.stringify(v)} is not a uuid`);
  return u;
}

/**
 * SOURCE_DATE_EPOCH (reproducible-builds.org): the image's own times are this moment, file mtimes are
 * clamped to it (the other times are it), and uuids not given are derived from it (and -U, the label),
 * so the same tree gives the same bytes.
 */
function sourceDateEpoch(): bigint | undefined {
  const v = process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d{1,12}$/.test(v)) throw new ImageError('MKFS_USAGE', `SOURCE_DATE_EPOCH=${JSON.stringify(v)} is not a count of seconds`);
  return BigInt(v);
}

/** --subvol [rw:|ro:|default:|default-ro:]SUBDIR, checked against the rootdir before anything is written. */
function parseSubvols(specs: string[], rootdir: string | undefined): Map<string, SubvolSpec> {
  const out = new Map<string, SubvolSpec>();
  if (specs.length && !rootdir) throw new ImageError('MKFS_USAGE', '--subvol needs --rootdir');
  let defaults = 0;
  for (const spec of specs) {
    const m = /^(rw|ro|default|default-ro):(.*)$/.exec(spec);
    const type = m ? m[1]! : 'rw';
    const rel = path.posix.normalize(m ? m[2]! : spec).replace(/\/+$/, '');
    if (rel === '' || rel === '.' || rel.startsWith('/') || rel === '..' || rel.startsWith('../')) {
      throw new ImageError('MKFS_USAGE', `--subvol ${spec}: not a directory inside --rootdir`);
    }
    let st: nodefs.Stats | undefined;
    try {
      st = nodefs.lstatSync(path.join(rootdir!, rel));
    } catch { /* reported below */ }
    if (!st?.isDirectory()) throw new ImageError('MKFS_USAGE', `--subvol ${spec}: ${path.join(rootdir!, rel)} is not a directory`);
    const key = Buffer.from(rel, 'utf8').toString('latin1');
    if (out.has(key)) throw new ImageError('MKFS_USAGE', `--subvol ${spec}: ${rel} given twice`);
    if (type.startsWith('default') && ++defaults > 1) throw new ImageError('MKFS_USAGE', `--subvol ${spec}: only one default subvolume`);
    out.set(key, { readonly: type === 'ro' || type === 'default-ro', isDefault: type.startsWith('default') });
  }
  return out;
}

export async function runMkfs(image: string, o: Opts): Promise<void> {
  const subvols = parseSubvols(o.subvol ?? [], o.rootdir);
  const inodeFlags = parseInodeFlags(o.inodeFlags ?? [], o.rootdir);
  if (o.deviceTable && !o.rootdir) throw new ImageError('MKFS_USAGE', '-D/--device-table needs --rootdir');
  const deviceTable = o.deviceTable ? parseDeviceTable(o.deviceTable) : undefined;
  const features = parseFeatures([...(o.features ?? []), ...(o.runtimeFeatures ?? [])]);
  if (!features) {
    process.stdout.write(listFeatures());
    return;
  }
  const mixed = !!o.mixed || features.mixed;
  if (features.blockGroupTree && (!features.freeSpaceTree || !features.noHoles)) {
    throw new ImageError('MKFS_USAGE', '-O block-group-tree needs free-space-tree and no-holes (the kernel refuses it without them)');
  }
  if (o.shrink && !o.rootdir) throw new ImageError('MKFS_USAGE', '--shrink needs --rootdir');
  if (o.reflink && !o.rootdir) throw new ImageError('MKFS_USAGE', '--reflink needs --rootdir');
  if (o.reflink && o.compress) throw new ImageError('MKFS_USAGE', '--reflink and --compress exclude each other: cloned extents are stored as the source holds them');
  const data = (o.data ?? 'single').toLowerCase();
  if (data !== 'single' && data !== 'dup') {
    throw new ImageError('MKFS_UNSUPPORTED', `-d ${o.data}: needs several devices (btrfs-ts makes single-device images); single or dup`);
  }
  const sectorsize = o.sectorsize ? Number(parseSize(o.sectorsize)) : 4096;
  // mixed block groups: tree blocks are sectors (the kernel requires it), one profile for both, single by default
  const nodesize = o.nodesize ? Number(parseSize(o.nodesize)) : mixed ? sectorsize : 16384;
  if (mixed && nodesize !== sectorsize) throw new ImageError('MKFS_USAGE', `-M: nodesize ${nodesize} and sectorsize ${sectorsize} must be equal with mixed block groups`);
  const metadata = o.metadata ?? (mixed ? 'single' : 'dup');
  if (metadata !== 'single' && metadata !== 'dup') throw new ImageError('MKFS_USAGE', `-m: profile ${metadata} not supported (single, dup)`);
  if (mixed && metadata !== data) throw new ImageError('MKFS_USAGE', `-M: metadata profile ${metadata} and data profile ${data} must be the same with mixed block groups`);
  const compressor = o.compress ? await makeCompressor(o.compress, sectorsize) : undefined;
  const csumType = csumTypeByName(o.csum ?? 'crc32c');
  if (csumType === undefined) throw new ImageError('MKFS_USAGE', `--csum: unknown checksum ${JSON.stringify(o.csum)} (crc32c, xxhash, sha256, blake2)`);
  const csum = await loadCsum(csumType);
  const fsid = uuidOption('-U/--uuid', o.uuid);
  const devUuid = uuidOption('--device-uuid', o.deviceUuid);
  const epoch = sourceDateEpoch();
  const reproducible = epoch === undefined ? {} : {
    now: { sec: epoch, nsec: 0 },
    uuidSeed: `SOURCE_DATE_EPOCH=${epoch} fsid=${fsid ? formatUuid(fsid) : ''} label=${o.label ?? ''}`,
  };

  // the rootdir's stat walk, done once for sizing and for the progress total
  let survey: RootdirSummary | undefined;
  let size: bigint | undefined = o.byteCount ? parseSize(o.byteCount) : undefined;
  const existing = nodefs.existsSync(image) ? nodefs.statSync(image) : undefined;
  if (existing && !existing.isFile() && !existing.isBlockDevice()) throw new ImageError('MKFS_USAGE', `${image} is not a file or block device`);
  // as mkfs.btrfs, even with -f: a filesystem the kernel has mounted (the file through a loop device, or
  // the device itself) would be overwritten under it
  if (existing) refuseIfMounted(image);
  const found = existing && !o.force ? probeFilesystem(image) : undefined;
  if (found) throw new ImageError('MKFS_EXISTS', `${image} already contains ${found === 'btrfs' ? 'a btrfs filesystem' : `a ${found} signature`} (use -f to overwrite)`);
  if (existing?.isBlockDevice()) {
    // the whole device, as mkfs.btrfs, or its first -b bytes
    const device = FileDevice.blockDeviceSize(image);
    if (size !== undefined && size > device) throw new ImageError('MKFS_USAGE', `-b ${size}: larger than ${image} (${device} bytes)`);
    size ??= device;
  }
  if (size === undefined && existing && existing.size > 0) size = BigInt(existing.size);
  if (size === undefined) {
    // at least 256 MiB, or room for the content twice over (half of it free), plus metadata reserve;
    // DUP data stores every byte twice
    let content = 0n;
    if (o.rootdir) {
      const s = (survey ??= surveyRootdir(o.rootdir));
      content = s.dataBytes * (data === 'dup' ? 2n : 1n) + BigInt(s.inodes) * 2048n + s.nameBytes * 4n;
    }
    const want = 2n * content + 128n * MiB;
    size = want > 256n * MiB ? ((want + MiB - 1n) / MiB) * MiB : 256n * MiB;
  }
  if (size < 128n * MiB) throw new ImageError('MKFS_TOO_SMALL', `size ${size} is too small (minimum 128 MiB)`);

  if (o.shrink && existing?.isBlockDevice()) throw new ImageError('MKFS_USAGE', '--shrink: only an image file can shrink, not a block device');
  if (o.reflink && existing?.isBlockDevice()) throw new ImageError('MKFS_USAGE', '--reflink: clones go into an image file, not a block device');
  const reflink = o.reflink ? new Reflinker(image, o.rootdir!) : undefined;
  const dev = existing?.isBlockDevice() ? FileDevice.open(image, { size }) : FileDevice.create(image, size);
  const release = existing ? () => undefined : removeOnInterrupt(image, 'image');
  let shrunk: bigint | undefined;
  try {
    const fs = createFilesystem(dev, {
      label: o.label, sectorsize, nodesize, metadataProfile: metadata, dataProfile: data, growable: false, csumType, mixed,
      fsid, devUuid, ...reproducible, noHoles: features.noHoles, extref: features.extref, freeSpaceTree: features.freeSpaceTree,
      skinnyMetadata: features.skinnyMetadata, quota: features.quota, blockGroupTree: features.blockGroupTree,
    });
    if (o.rootdir) {
      const rootdir = o.rootdir;
      await withProgress({ label: 'mkfs', flag: o.progress, quiet: o.quiet }, (p) => {
        if (p.enabled) p.setTotal(Number((survey ??= surveyRootdir(rootdir)).dataBytes));
        return populateFromDir(rootdir, new Populator(fs, 5n, compressor), {
          onData: (n) => p.advance(n),
          epoch, subvols, now: reproducible.now, deviceTable, inodeFlags, reflink,
          subvolUuid: reproducible.uuidSeed === undefined ? undefined : (rel) => derivedUuid(reproducible.uuidSeed, `subvolume ${rel}`),
        });
      });
      // the cloned data is in place before the commit makes it reachable
      reflink?.flush();
      fs.commit();
      if (o.shrink) {
        // a second commit records the smaller device (DEV_ITEM, superblock); the file is cut after it
        shrunk = shrinkToChunks(fs);
        fs.commit();
      }
    }
    if (!o.quiet) {
      process.stdout.write(`btrfs-ts mkfs: ${image}: ${shrunk ?? size} bytes, nodesize ${nodesize}, sectorsize ${sectorsize}, metadata ${metadata}${mixed ? ' (mixed block groups)' : ''}, csum ${csum.name}` +
        `${o.label ? `, label ${JSON.stringify(o.label)}` : ''}, generation ${fs.generation}\n`);
    }
  } catch (err) {
    // an image file this run created is half-made: remove it rather than leave something that looks usable
    if (!existing) {
      dev.close();
      nodefs.rmSync(image, { force: true });
    }
    throw err;
  } finally {
    dev.close();
    release();
  }
  if (shrunk !== undefined) nodefs.truncateSync(image, Number(shrunk));
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function register(program: Command): void {
  withProgressOptions(program
    .command('mkfs')
    .description('create a btrfs image file, optionally populated from a directory (like mkfs.btrfs --rootdir)')
    .argument('<image>', 'image file to create (or block device)')
    .option('-r, --rootdir <dir>', 'copy this directory tree into the top-level subvolume')
    .option('-b, --byte-count <size>', 'image size (default: 256M, or twice the --rootdir content plus reserve)')
    .option('--size <size>', 'same as --byte-count')
    .option('--compress <alg[:level]>', 'compress file data with zlib, lzo or zstd (with --rootdir)')
    .option('-L, --label <label>', 'filesystem label')
    .option('-s, --sectorsize <n>', 'data block size', '4096')
    .option('-n, --nodesize <n>', 'metadata block size (default 16384; the sectorsize with -M)')
    .option('-m, --metadata <profile>', 'metadata profile: single or dup (default dup; single with -M)')
    .option('-d, --data <profile>', 'data profile: single or dup (one device)', 'single')
    .option('-O, --features <list>', 'comma-separated features to turn on, ^feature off; list-all lists them', collect, [])
    .option('-R, --runtime-features <list>', 'as -O (mkfs.btrfs before 6.3: quota, free-space-tree)', collect, [])
    .option('--subvol <[type:]dir>', 'make rootdir subdirectory DIR a subvolume; type rw (default), ro, default or default-ro', collect, [])
    .option('-D, --device-table <file>', 'owners, permissions and device nodes from a genext2fs/makedevs device table (unprivileged builds)')
    .option('-M, --mixed', 'mixed block groups: data and metadata share block groups (small filesystems)')
    .option('--csum <type>', 'checksum algorithm: crc32c, xxhash, sha256 or blake2 (also --checksum)')
    .option('--checksum <type>', 'same as --csum')
    .option('-U, --uuid <uuid>', 'filesystem uuid (default: random, or derived from SOURCE_DATE_EPOCH)')
    .option('--device-uuid <uuid>', 'device uuid (default: random, or derived from SOURCE_DATE_EPOCH)')
    .option('-f, --force', 'overwrite an existing filesystem (btrfs, ext2/3/4, xfs, swap, ... are recognised)')
    .option('--inode-flags <flags:path>', 'with --rootdir: nodatacow and/or nodatasum (comma-separated) for PATH, inherited by what a directory holds (repeatable)', collect, [])
    .option('--reflink', 'with --rootdir: share file data with the source files (FICLONERANGE; both on one btrfs; needs python3)')
    .option('--shrink', 'with --rootdir: cut the image to what its chunks use (as mkfs.btrfs --shrink)')
    .option('-K, --nodiscard', 'accepted as mkfs.btrfs takes it: btrfs-ts never discards (TRIMs) the target')
    .option('-q, --quiet', 'print nothing on success'))
    .action(async (image: string, o: Opts & { size?: string; checksum?: string }) => {
      await runMkfs(image, { ...o, byteCount: o.byteCount ?? o.size, csum: o.csum ?? o.checksum });
    });
}
