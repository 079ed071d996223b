import { initCodecs } from '../compress/index.js';
import { ReceiveError } from '../errors.js';
import { BTRFS_FIRST_FREE_OBJECTID, BTRFS_FS_TREE_OBJECTID, BTRFS_ROOT_ITEM_KEY, BTRFS_ROOT_SUBVOL_RDONLY } from '../image/structs/constants.js';
import { getRootItem } from '../image/write/subvol.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { getInode, lookupDirEntry } from '../image/write/inode.js';
import type { PlanTotals } from '../plan/report.js';
import { processStream, type ProcessResult } from '../stream/receiver.js';
import { ImageReceiver, type ImageReceiverOptions, type ReceivedSubvol } from './image-receiver.js';
import { isDirMode } from './namespace.js';
import { splitStreamPath } from './paths.js';
import { escapePath } from '../dump/escape.js';
import { traceReceiver, type TraceLevel } from './trace.js';

export { ImageReceiver, type ImageReceiverOptions, type ReceivedSubvol } from './image-receiver.js';

export interface ReceiveOptions extends Omit<ImageReceiverOptions, 'dest'> {
  /** Directory inside the image to receive into (default: the top level). */
  dest?: Uint8Array | string;
  /** Stop after the first END, like `btrfs receive -e`. */
  stopAfterFirstEnd?: boolean;
  maxCommandLen?: number;
  afterCommand?: (res: ProcessResult) => void | Promise<void>;
  /** The lines `btrfs receive` prints at verbosity `level` (1 default, 2 `-v`, 3 `-vv`), to `write`. */
  trace?: { level: TraceLevel; write: (line: string, toStdout?: boolean) => void };
}

export interface ReceiveSummary extends ProcessResult {
  subvolumes: ReceivedSubvol[];
  plan: PlanTotals;
  extents: { extents: number; inline: number; compressed: number; bytes: number };
}

/**
 * Receives every stream of `input` into the filesystem model, committing once per completed subvolume
 * (the superblock is written last by each commit). If anything fails, the subvolume being received is
 * never committed: the image keeps its previous state.
 */
export async function receiveStreams(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, fs: Filesystem, opts: ReceiveOptions = {}): Promise<ReceiveSummary> {
  await initCodecs({ decodeOnly: opts.compress === undefined });
  const dest = resolveDest(fs, opts.dest ?? '');
  const r = new ImageReceiver(fs, {
    ...opts,
    dest,
    onSubvolumeDone: async (s) => {
      fs.commit();
      await opts.onSubvolumeDone?.(s);
    },
  });
  // the image writes overlap the parsing: the kernel's receive also leaves them to writeback threads
  fs.device.setWriteBehind?.(true);
  let res: ProcessResult;
  try {
    // the receiver copies what it keeps of a command (FileWriter gathers into its own buffer)
    const driven = opts.trace && opts.trace.level > 0 ? traceReceiver(r, opts.trace.level, opts.trace.write) : r;
    res = await processStream(input, driven, {
      reuseInput: true,
      // the CRC check's per-sector CRCs become the data checksums: one pass over the data, not two
      sectorCrcs: true,
      ...(opts.stopAfterFirstEnd ? { stopAfterFirstEnd: true } : {}),
      ...(opts.maxCommandLen ? { maxCommandLen: opts.maxCommandLen } : {}),
      ...(opts.afterCommand ? { afterCommand: opts.afterCommand } : {}),
    });
  } catch (e) {
    // the error being thrown is the one to report; queued writes of an uncommitted subvolume do not matter
    try { fs.device.setWriteBehind?.(false); } catch { /* already failing */ }
    throw e;
  }
  fs.device.setWriteBehind?.(false);
  return { ...res, subvolumes: r.received, plan: r.report.totals, extents: r.writer.stats };
}

/** `--dest`: a directory of the image (crossing into subvolumes), like receiving under a mount point. */
export function resolveDest(fs: Filesystem, path: Uint8Array | string): { root: bigint; dir: bigint; path: string } {
  const bytes = typeof path === 'string' ? new TextEncoder().encode(path.replace(/^\/+|\/+$/g, '')) : path;
  let root = BTRFS_FS_TREE_OBJECTID;
  let dir = BTRFS_FIRST_FREE_OBJECTID;
  for (const part of splitStreamPath(bytes, '--dest')) {
    const e = lookupDirEntry(fs, root, dir, part);
    if (!e) throw new ReceiveError('DEST_NOT_FOUND', `--dest: ${Buffer.from(part).toString('latin1')} does not exist in the image`);
    if (e.location.type === BTRFS_ROOT_ITEM_KEY) {
      root = e.location.objectid;
      dir = BTRFS_FIRST_FREE_OBJECTID;
      if (!fs.hasTree(root)) throw new ReceiveError('DEST_NOT_FOUND', `--dest: subvolume ${root} is missing`);
      continue;
    }
    const inode = getInode(fs, root, e.location.objectid);
    if (!inode || !isDirMode(inode.mode)) throw new ReceiveError('DEST_NOT_DIR', `--dest: ${Buffer.from(part).toString('latin1')} is not a directory`);
    dir = e.location.objectid;
  }
  // the kernel refuses to create anything inside a read-only subvolume (EROFS); so do we
  if (root !== BTRFS_FS_TREE_OBJECTID && (getRootItem(fs, root).flags & BTRFS_ROOT_SUBVOL_RDONLY) !== 0n) {
    throw new ReceiveError('DEST_READONLY', `--dest: ${typeof path === 'string' ? path : Buffer.from(path).toString('latin1')} is inside a read-only subvolume`);
  }
  return { root, dir, path: bytes.length ? `--dest ${JSON.stringify(escapePath(bytes))}` : 'the top level' };
}
