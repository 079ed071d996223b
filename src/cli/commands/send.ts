import { rmSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { type Command, InvalidArgumentError } from 'commander';
import { SendError } from '../../errors.js';
import { removeOnInterrupt } from '../interrupt.js';
import { refuseOutputOverInput } from '../output-over-input.js';
import { SEND_RUNTIME_FLAGS } from '../send-flags.js';
import { BtrfsImage } from '../../image/read/index.js';
import { FileSink } from '../../io/file-sink.js';
import { degradedOption, deviceOption, devicesOf, readImage } from '../image-file.js';
import type { DataFill } from '../../send/data-fill.js';
import type { FillThread } from '../../send/data-fill-worker.js';
import { fillThread, readsBehind, sendDataFill, sendSubvolumes } from '../../send/index.js';
import { BufferPool } from '../../util/bytes.js';
import { nodeWorkerThreads, nodeZlib } from '../../util/lazy-builtins.js';

interface SendCliOptions {
  file?: string;
  parent?: string;
  clone: string[];
  e?: boolean;
  proto?: number;
  compressedData?: boolean;
  data: boolean;
  quiet?: boolean;
  verbose?: boolean;
  device: string[];
  degraded?: boolean;
}

/**
 * V8 hands a function to its optimising compiler once it has run about 66 KB of bytecode (the default
 * --interrupt-budget). Most of a short send — an incremental one is ~0.2 s of work spread over many
 * functions — then went to compiling code it was about to stop running: CPU 1.10-1.28 s with the default,
 * 0.69-0.85 s with 16 times the budget (bench/send.sh's incremental; full sends unchanged, their hot
 * loops still get optimised within the first fraction of a second: docs/performance.md). Set for the
 * send command only, when it runs; library callers keep their own flags.
 */
const SEND_INTERRUPT_BUDGET = 16 * 67584;

/**
 * V8's young generation starts at 1 MiB and doubles when a scavenge finds much of it alive; an incremental
 * send keeps what it reads (tree blocks, the diff's changes, names) alive for a while, and was done after
 * 14-15 scavenges, still growing. Growing by 8 instead of 2 (to 8 MiB, V8's 16 MiB cap next) leaves ~9:
 * bench/send.sh's incremental, callgrind 0.709-0.731 G -> 0.642-0.721 G instructions (main thread
 * 0.643-0.653 -> 0.627-0.638 G), 31 alternating runs 186 -> 174 ms wall, 164 -> 155 ms CPU; peak RSS
 * 75 -> 84 MB (a factor of 16: 98 MB for no fewer instructions). Not for full sends: no faster in
 * alternating runs, and 23 MB more at their peak (protocol 1 of `big` 116 -> 139 MB).
 */
const SEND_SEMI_SPACE_GROWTH = 8;

function parseProto(v: string): number {
  if (!/^[0-2]$/.test(v)) throw new InvalidArgumentError('protocol must be 0 (highest supported), 1 or 2');
  return Number(v);
}

export function register(program: Command): void {
  program
    .command('send')
    .description('write a send stream of read-only subvolumes of a btrfs image (like btrfs send, no mount needed)')
    .argument('<image>', 'btrfs image file')
    .argument('<subvol...>', 'read-only subvolume paths inside the image, from the top level')
    .option('-f, --file <OUT>', 'write the stream to OUT instead of stdout')
    .option('-p, --parent <PARENT>', 'incremental send: only the difference from PARENT, a related read-only snapshot the receiver has')
    .option('-c, --clone <SRC>', 'clone source: a read-only subvolume the receiver has, extents shared with it are cloned (repeatable); without -p the parent is picked among them, as btrfs send does', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('-e', 'several subvolumes in one stream (btrfs send -e): one header, END only after the last')
    .option('--proto <N>', 'stream protocol: 1 (default), 2, or 0 for the highest supported', parseProto)
    .option('--compressed-data', 'send compressed extents as ENCODED_WRITE, unchanged (implies --proto 2)')
    .option('--no-data', 'send UPDATE_EXTENT instead of file data')
    .option('-q, --quiet', 'print nothing but errors')
    .option('-v, --verbose', 'print the bytes written per subvolume')
    .addOption(deviceOption())
    .addOption(degradedOption())
    .action(async (image: string, subvols: string[], o: SendCliOptions) => {
      refuseOutputOverInput(o.file, [image, ...o.device], 'SEND_USAGE', '-f');
      if (!o.file && process.stdout.isTTY) {
        throw new SendError('SEND_TTY', 'not writing a send stream to a terminal: redirect stdout or use -f FILE');
      }
      // the thread reading a full --compressed-data send's data behind it starts before the image is opened
      const thread = fillThread(o);
      const budget = budgetOnceStarted(thread, o.parent !== undefined);
      try {
        await readImage(image, async (src) => {
          const img = await BtrfsImage.open(src);
          // the encoder's buffer, the one held for the data read into it (a full --compressed-data send:
          // send/data-fill.ts, shared memory), the one being written and the 8 MiB queued behind it
          // (file-sink.ts) are reused
          const pool = new BufferPool(1 << 20, 14, { shared: readsBehind(o) });
          const opts = {
            ...(o.proto !== undefined ? { proto: o.proto } : {}), compressedData: o.compressedData ?? false, noData: !o.data,
            ...(o.parent !== undefined ? { parent: o.parent } : {}), cloneSources: o.clone, endOnce: o.e ?? false,
            bufferPool: pool, ...(thread ? { fillThread: thread } : {}),
            onSubvolume: (s: { path: string }) => { if (!o.quiet) process.stderr.write(`At subvol ${s.path}\n`); },
          };
          // the thread reading data behind the send also writes the output file (FileSink's WriteBehind)
          const fill = sendDataFill(img, opts);
          try {
            await sendTo(sendSubvolumes(img, subvols, { ...opts, ...(fill ? { dataFill: fill } : {}) }), o, pool, fill, budget);
          } finally {
            fill?.close();
          }
        }, { blocking: true, ...devicesOf(o) });
      } finally {
        thread?.close();
      }
    });
}

/** The stream into -f FILE or stdout; `budget` called as it goes (budgetOnceStarted). */
async function sendTo(stream: AsyncGenerator<Uint8Array>, o: SendCliOptions, pool: BufferPool, fill: DataFill | undefined, budget: () => void): Promise<void> {
  // The first chunk comes only after every check passed: no output file is made for a refused send.
  const first = await stream.next();
  const file = o.file ? await FileSink.open(o.file, pool, undefined, fill) : FileSink.stdout(pool);
  const release = file.regular ? removeOnInterrupt(file.path, 'stream') : () => undefined;
  let bytes = 0;
  try {
    for (let r = first; !r.done; r = await stream.next()) {
      budget();
      await file.write(r.value);
      bytes += r.value.length;
    }
    await file.close();
    release();
  } catch (e) {
    release();
    // the send's own finally blocks stop its reading threads (the data-fill's: the caller, after the
    // output): an output failure left them waiting for the send, and the process with them (-f /dev/full
    // of a send with compressed extents never ended)
    await stream.return(undefined).catch(() => undefined);
    await file.close().catch(() => undefined);
    // half a stream is no stream; but never remove what is not a file of ours (-f /dev/full)
    if (file.regular) rmSync(file.path, { force: true });
    // a reader that went away (`| head -c N`) ends the send quietly, as for any Unix filter
    if (!o.file && (e as { cause?: { code?: string } }).cause?.code === 'EPIPE') return;
    throw e;
  }
  if (o.verbose) process.stderr.write(`sent ${bytes} bytes\n`);
}

/**
 * Raises V8's interrupt budget (SEND_INTERRUPT_BUDGET) and, for an incremental send, its young generation's
 * growth (SEND_SEMI_SPACE_GROWTH) now, or, with a thread of data-fill.ts starting, once it has started (the
 * returned function, called as the send goes, sets them then): a V8 flag changed while a thread starts
 * makes V8 refuse node's code cache of its built-in modules there, and the thread compiled them again —
 * 60-80 ms of CPU instead of 30-40, and ready 100-140 ms after it was started instead of ~60
 * (docs/performance.md, twelfth session, sendc16).
 */
function budgetOnceStarted(thread: FillThread | undefined, incremental: boolean): () => void {
  let set = false;
  const budget = (): void => {
    if (set || (thread && !thread.ready)) return;
    // and so of every built-in module loaded after the change in this thread too: standard error is loaded
    // first, with its cache, and for a full send what its threads and zlib-compressed extents need
    // (util/lazy-builtins.ts: an incremental send loads them only if it meets such an extent)
    void process.stderr;
    if (!incremental) {
      nodeWorkerThreads();
      nodeZlib();
    }
    setFlagsFromString(`--${SEND_RUNTIME_FLAGS.interruptBudget}=${SEND_INTERRUPT_BUDGET}`);
    if (incremental) setFlagsFromString(`--${SEND_RUNTIME_FLAGS.semiSpaceGrowth}=${SEND_SEMI_SPACE_GROWTH}`);
    set = true;
  };
  budget();
  return budget;
}
