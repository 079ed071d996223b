import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { BtrfsTsError, ReceiveError } from '../errors.js';
import { initCodecs } from '../compress/index.js';
import { sendCommandName } from '../stream/constants.js';
import { processStream } from '../stream/receiver.js';
import { isUnknown } from '../stream/types.js';
import { RECEIVED_INDEX_FILE, ReceivedIndex } from '../tools/received-index.js';
import { showPath } from '../tools/paths.js';
import { makeDirs, releaseHeldPaths } from './fs.js';
import { HelperError, SyscallHelper } from './syscall-helper.js';
import { ExtractReceiver } from './receiver.js';
import { openForCopy, restoreModes } from './unlock-modes.js';
import type { ExtractStats } from './types.js';
import { openInput, type ReadMeter } from '../io/input.js';

/**
 * `extract-stream`: receive one or more send streams into a plain directory on any filesystem, the way
 * `btrfs receive` would into a btrfs mount. Subvolumes become directories DIR/NAME; incrementals find
 * their parent (and clone sources) through DIR/.btrfs-ts-received.json, written at each subvolume's END.
 */

export interface ExtractStreamOptions {
  /** Restore uid/gid (default: when running as root). */
  owners?: boolean;
  /** Restore xattrs (default true). */
  xattrs?: boolean;
  /** Warnings (things not restored); default: stderr. */
  warn?: (msg: string) => void;
  /** Largest command accepted (see ParseOptions.maxCommandLen). */
  maxCommandLen?: number;
  /** Told how far the reading of each input file has got (progress); `setTotal` once per input. */
  meter?: ReadMeter;
}

export interface ExtractResult extends ExtractStats {
  /** Directory names of the subvolumes received, in order. */
  received: string[];
}

export type ExtractInput = string | { name: string; chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> };

const SLASH = Buffer.from('/');

async function loadIndex(root: string): Promise<ReceivedIndex> {
  const file = path.join(root, RECEIVED_INDEX_FILE);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new ReceivedIndex();
    throw new ReceiveError('EXTRACT_INDEX', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  return ReceivedIndex.fromJson(text, file);
}

async function saveIndex(root: string, index: ReceivedIndex): Promise<void> {
  const file = path.join(root, RECEIVED_INDEX_FILE);
  const tmp = `${file}.tmp-${process.pid}`;
  await fsp.writeFile(tmp, index.toJson());
  await fsp.rename(tmp, file);
}

function utf8Name(name: Uint8Array, what: string): string {
  const s = Buffer.from(name).toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(Buffer.from(name))) {
    throw new ReceiveError('EXTRACT_SNAPSHOT_NAME', `${what} name ${showPath(name)} is not UTF-8; cannot copy it with cp`);
  }
  return s;
}

/**
 * A snapshot starts as an exact copy of its parent. `cp -a` copies everything a receive must keep (modes,
 * owners, ns times, xattrs, hard links, special files) and reflinks data where the filesystem can.
 */
async function copySnapshot(root: Buffer, parent: Uint8Array, name: Uint8Array): Promise<void> {
  const from = utf8Name(parent, 'parent subvolume');
  const tmp = `.btrfs-ts-snapshot-${process.pid}-${Date.now()}`;
  const source = Buffer.concat([root, SLASH, Buffer.from(parent)]);
  const copy = Buffer.concat([root, SLASH, Buffer.from(tmp)]);
  // not root: what the parent's modes forbid us to read is opened for the copy, then closed again
  const opened = await openForCopy(source);
  let r: ReturnType<typeof spawnSync>;
  try {
    r = spawnSync('cp', ['-a', '--reflink=auto', '--', `./${from}`, `./${tmp}`], { cwd: root.toString(), stdio: ['ignore', 'ignore', 'pipe'] });
    if (!r.error && r.status === 0) await restoreModes(copy, opened);
  } finally {
    await restoreModes(source, opened);
  }
  if (r.error || r.status !== 0) {
    // rm(1) where node's own recursive rm stops at a path of PATH_MAX bytes (a deep parent's half copy)
    await fsp.rm(copy, { recursive: true, force: true }).catch(() => spawnSync('rm', ['-rf', '--', `./${tmp}`], { cwd: root.toString(), stdio: 'ignore' }));
    throw new ReceiveError('EXTRACT_SNAPSHOT_COPY', `copying parent ${showPath(parent)} failed: ${r.error?.message ?? r.stderr!.toString().trim()}`);
  }
  await fsp.rename(Buffer.concat([root, SLASH, Buffer.from(tmp)]), Buffer.concat([root, SLASH, name]));
}

/** Adds the failing command's position and path to an error from the filesystem or a codec. */
function withContext(e: unknown, rcv: ExtractReceiver): unknown {
  const c = rcv.current;
  if (!c?.meta) return e;
  const ctx = {
    offset: c.meta.offset,
    commandIndex: c.meta.index,
    command: sendCommandName(c.cmd),
    ...(!isUnknown(c) && 'path' in c ? { path: Buffer.from(c.path).toString('latin1') } : {}),
    cause: e,
  };
  if (e instanceof BtrfsTsError) {
    if (e.offset !== undefined) return e;
    return new (e.constructor as typeof BtrfsTsError)(e.code, e.message, { ...ctx, ...(e.path !== undefined ? { path: e.path } : {}) });
  }
  if (e instanceof HelperError) return new ReceiveError('EXTRACT_FS', e.message, ctx);
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code === 'string') return new ReceiveError('EXTRACT_FS', err.message, ctx);
  return e;
}

/** Receives every input, in order, into `dir` (created if missing). */
export async function extractStreams(inputs: ExtractInput[], dir: string, opts: ExtractStreamOptions = {}): Promise<ExtractResult> {
  await initCodecs();
  let rootStr: string;
  try {
    await makeDirs(dir);
    rootStr = await fsp.realpath(dir);
  } catch (e) {
    throw new ReceiveError('EXTRACT_TARGET', `cannot create target directory ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const root = Buffer.from(rootStr);
  const index = await loadIndex(rootStr);
  const helper = new SyscallHelper();
  const received: string[] = [];
  let source = '';
  const rcv = new ExtractReceiver({
    root,
    index,
    helper,
    owners: opts.owners ?? process.getuid?.() === 0,
    xattrs: opts.xattrs ?? true,
    warn: opts.warn ?? ((m) => process.stderr.write(`btrfs-ts: WARNING: ${m}\n`)),
    snapshot: (parent, name) => copySnapshot(root, parent, name),
    finished: async (name, uuid, ctransid, parentUuid) => {
      index.add(name, uuid, ctransid, parentUuid, source);
      await saveIndex(rootStr, index);
      received.push(Buffer.from(name).toString('latin1'));
    },
  });
  try {
    for (const input of inputs) {
      source = typeof input === 'string' ? path.basename(input) : input.name;
      const chunks = typeof input === 'string' ? await openInput(input, opts.meter) : input.chunks;
      try {
        await processStream(chunks, rcv, opts.maxCommandLen !== undefined ? { maxCommandLen: opts.maxCommandLen } : {});
      } catch (e) {
        throw withContext(e, rcv);
      }
    }
  } finally {
    await rcv.close();
    await helper.close();
    releaseHeldPaths();
  }
  return { ...rcv.stats, received };
}
