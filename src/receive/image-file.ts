import { existsSync, realpathSync, statfsSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ReceiveError } from '../errors.js';
import { createFilesystem } from '../image/write/create.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { openFilesystem } from '../image/write/open.js';
import { FileDevice } from '../io/image-file.js';
import { lockImage, refuseIfMounted } from '../io/image-lock.js';
import { recoverUndo } from '../io/undo-restore.js';
import { receiveStreams, type ReceiveOptions, type ReceiveSummary } from './index.js';

/**
 * `btrfs-ts receive` as a library call on an image file: everything the command does around the receive
 * itself, so a program gets the same guarantees — the image is refused while the kernel has it mounted,
 * one writer at a time (a lock file beside it), a missing image is made as mkfs makes one (256 MiB,
 * growing as needed), and a failure leaves the image byte for byte as it was at its last commit (a new
 * image is removed; an existing one is put back from its rollback journal, undo-log.ts). A journal left by
 * a killed receive is rolled back first.
 */
export interface ReceiveImageOptions extends ReceiveOptions {
  /** Never grow the image past this (default: its size plus the free space of the filesystem holding it). */
  maxSize?: bigint;
  /**
   * Memory for decoded tree blocks (default 8 MiB): past it clean blocks are dropped and read again when
   * needed, changed ones written early to their new place in the image.
   */
  metadataCache?: number;
}

export interface ReceiveImageResult extends ReceiveSummary {
  /** The image did not exist (or was empty) and was made. */
  created: boolean;
  /** The block cache: its budget, blocks read from the image, dropped from memory, written before the commit. */
  metadata: { cache: number; blockReads: number; evictions: number; earlyWrites: number };
}

/**
 * The receive CLI's block cache. Not smaller: a stream of many files in few directories adds each name at
 * its hash's place in the directory's DIR_ITEM leaves, all over them, and once those leaves no longer fit
 * every new name reads (and decodes) a leaf again. Synthetic streams of N files in 100 directories
 * (bench/make-many-files.mjs), user CPU: 100,000 files 70 s at 8 MiB against 24 s at 32 MiB (24 at 128);
 * 200,000 files 238 s at 8 MiB, 82 at 16, 58 at 32, 52 at 64 (docs/performance.md, twenty-first
 * session). Peak RSS 254 MB at 8 MiB, 530 MB at 32 MiB for 200,000 files.
 */
export const DEFAULT_METADATA_CACHE = 32 << 20;

const MiB = 1n << 20n;

type Input = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/**
 * `input` may be a function that opens it: it is then called only once the image is locked and open, so
 * an image that is refused never leaves an input open behind.
 */
export async function receiveIntoImage(given: string, input: Input | (() => Promise<Input>), opts: ReceiveImageOptions = {}): Promise<ReceiveImageResult> {
  const image = realImagePath(given);
  refuseIfNotImageFile(image);
  refuseIfMounted(image);
  const unlock = lockImage(image);
  let dev: FileDevice | undefined;
  let created = false;
  let committed = false;
  try {
    recoverUndo(image);
    const cache = opts.metadataCache ?? DEFAULT_METADATA_CACHE;
    let fs: Filesystem;
    // a block device has the size it has; an image file grows as needed
    const growth = isBlockDevice(image) ? { growable: false, cacheBytes: cache } : { growable: true, maxSize: opts.maxSize ?? hostLimit(image), cacheBytes: cache };
    ({ fs, dev, created } = await openOrCreate(image, growth));
    const opened = dev;
    const s = await receiveStreams(typeof input === 'function' ? await input() : input, fs, {
      ...opts,
      onSubvolumeDone: async (v) => {
        committed = true;
        opened.committed();
        await opts.onSubvolumeDone?.(v);
      },
    });
    const st = fs.store;
    return { ...s, created, metadata: { cache, blockReads: st.reads, evictions: st.evictions, earlyWrites: st.earlyWrites } };
  } catch (e) {
    if (created && !committed) {
      // an image this call made and never committed anything to is removed: nothing existed before
      dev?.close();
      dev = undefined;
      try { unlinkSync(image); } catch { /* keep the first error */ }
    } else {
      dev?.rollback();
    }
    throw e;
  } finally {
    dev?.close();
    unlock();
  }
}

/**
 * One committed change to an existing image, with receive's guarantees: refused while the kernel has it
 * mounted, one writer at a time, a journal left by a killed writer rolled back first, and a failure
 * (in `change` or in the commit) leaving the image byte for byte as it was. `change` gets the image's path
 * (its own, through links) and the opened filesystem; the commit follows it.
 */
export async function changeImage<T>(given: string, change: (image: string, fs: Filesystem) => Promise<T> | T): Promise<T> {
  const image = realImagePath(given);
  refuseIfNotImageFile(image);
  if (!existsSync(image)) throw new ReceiveError('IMAGE_OPEN', `cannot open image ${given}: no such file`);
  refuseIfMounted(image);
  const unlock = lockImage(image);
  let dev: FileDevice | undefined;
  try {
    recoverUndo(image);
    dev = FileDevice.open(image);
    dev.startUndo();
    const growth = isBlockDevice(image) ? { growable: false } : { growable: true, maxSize: hostLimit(image) };
    const fs = await openFilesystem(dev, growth);
    const r = await change(image, fs);
    fs.commit();
    dev.committed();
    return r;
  } catch (e) {
    dev?.rollback();
    throw e;
  } finally {
    dev?.close();
    unlock();
  }
}

/**
 * The image's own path, through any symlink to it or to a directory on the way: the lock and the rollback
 * journal sit beside the image itself, so two receives reaching it by two names (`latest.img` linked to
 * `2026-11-27.img`) meet the same lock. Before, both ran at once, and the last commit left the other's
 * subvolume out and its data over blocks the first used (btrfs check: errors in the csum tree).
 */
function realImagePath(image: string): string {
  const dir = dirname(resolve(image));
  const real = existsSync(image) ? realpathSync(image) : existsSync(dir) ? join(realpathSync(dir), basename(image)) : image;
  // the name given, in messages too, where no link is on the way
  return real === resolve(image) ? image : real;
}

const isBlockDevice = (image: string): boolean => existsSync(image) && statSync(image).isBlockDevice();

async function openOrCreate(image: string, growth: { growable: boolean; maxSize?: bigint; cacheBytes: number }): Promise<{ fs: Filesystem; dev: FileDevice; created: boolean }> {
  // a block device is never made here: one without a btrfs is refused by the open (no superblock)
  if (existsSync(image) && (statSync(image).size > 0 || isBlockDevice(image))) {
    const dev = FileDevice.open(image);
    try {
      // before the open: it may already write (root items of old images are fixed there)
      dev.startUndo();
      return { fs: await openFilesystem(dev, growth), dev, created: false };
    } catch (e) {
      dev.rollback();
      dev.close();
      throw e;
    }
  }
  const initial = growth.maxSize !== undefined && growth.maxSize < 256n * MiB ? growth.maxSize : 256n * MiB;
  const dev = FileDevice.create(image, initial);
  try {
    // once something is committed the image is kept; from then on a failure rolls back to the last commit
    // (journaled from the start: what was never written is known to be a hole and costs no read)
    dev.startUndo({ fresh: true });
    return { fs: createFilesystem(dev, growth), dev, created: true };
  } catch (e) {
    // nothing existed before: leave nothing (a half-made image is not a btrfs)
    dev.close();
    try { unlinkSync(image); } catch { /* keep the first error */ }
    throw e;
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

/**
 * Without maxSize the image grows at most by what the filesystem holding it has free, as a real device
 * fills up: a crafted FALLOCATE of petabytes then stops with IMAGE_FULL instead of growing a sparse file
 * and the extent tree for hours.
 */
function hostLimit(image: string): bigint {
  const s = statfsSync(dirname(resolve(image)), { bigint: true });
  return (existsSync(image) ? BigInt(statSync(image).size) : 0n) + s.bavail * s.bsize;
}
