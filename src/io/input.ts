import { closeSync, createReadStream, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { BtrfsTsError } from '../errors.js';
import { detectCompression, MAGIC_BYTES, type DestroyableInput } from './compression-magic.js';
import { FileWindowInput } from './window-input.js';

/** 1 MiB reads: large enough that per-chunk overhead vanishes, small enough to keep memory flat. */
const CHUNK = 1 << 20;

/**
 * Told how far the reading of an input has got, in bytes of the file as stored (compressed bytes for a
 * compressed stream file), and its size when it is known: a progress meter.
 */
export interface ReadMeter {
  setTotal(total: number | undefined): void;
  advance(bytes: number): void;
}

/**
 * A send stream source: a file (`-f`) or stdin. Opening fails early with a clear error instead of inside
 * the parser's first read.
 */
export async function openInput(file: string | undefined, meter?: ReadMeter): Promise<AsyncIterable<Uint8Array>> {
  if (file === undefined || file === '-') return await stdinInput(meter);
  // opened on this thread, not through a FileHandle: node:fs/promises and the ten modules behind it are
  // compiled from source at every receive (its V8 flags refuse node's code cache of them), ~21 M instructions
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new BtrfsTsError('INPUT_OPEN', `cannot open ${file}: ${(e as Error).message}`, { cause: e });
  }
  let head: Buffer;
  try {
    // a directory opens fine and fails only at the first read, with no name attached
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new BtrfsTsError('INPUT_OPEN', `cannot read ${file}: is a directory, not a send stream`);
    // `-f <(zstdcat s.zst)`, `-f /dev/stdin` on a pipe, a named FIFO: no reads at an offset there (ESPIPE)
    if (st.isFIFO() || st.isSocket() || st.isCharacterDevice()) return await sequentialInput(fd, st, file, meter);
    meter?.setTotal(st.isFile() ? st.size : undefined);
    head = Buffer.alloc(MAGIC_BYTES);
    head = head.subarray(0, readSync(fd, head, 0, MAGIC_BYTES, 0));
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  const kind = detectCompression(head);
  if (kind) {
    // loaded first: a 'data' listener starts the stream flowing, and nothing may flow before the decompressor
    const { decompressed } = await import('./decompress.js');
    const raw = createReadStream('', { fd, start: 0, highWaterMark: CHUNK });
    if (meter) raw.on('data', (c) => meter.advance(c.length));
    return decompressed(raw, kind, file);
  }
  return new FileWindowInput(fd, CHUNK, meter ? (n) => meter.advance(n) : undefined);
}

/**
 * A pipe, FIFO, socket or character device that -f names, read in order as stdin is (below): a pipe or
 * socket is a window source too, a device only chunks. The descriptor is closed with it.
 */
async function sequentialInput(fd: number, st: Stats, file: string, meter?: ReadMeter): Promise<DestroyableInput> {
  meter?.setTotal(undefined);
  const chunks = streamChunks(() => createReadStream('', { fd, highWaterMark: CHUNK }), file, meter);
  if (st.isCharacterDevice()) return chunks;
  const { StdinInput } = await import('./stdin-input.js');
  return new StdinInput(fd, false, chunks, meter ? (n) => meter.advance(n) : undefined, file);
}

/**
 * stdin, decompressed when its first bytes say so. It is looked at only when the consumer starts
 * reading, so a receive waiting for a pipe can still be interrupted (destroy) before any byte arrived.
 * A pipe, socket or file is also a window source (stdin-input.ts): read into the parser's own buffer.
 */
async function stdinInput(meter?: ReadMeter): Promise<DestroyableInput> {
  // `< file` makes stdin a regular file whose size is known; a pipe's is not
  let st: Stats | undefined;
  try {
    st = fstatSync(0);
  } catch {
    st = undefined;
  }
  // a terminal: nothing would come but what the user types (btrfs receive waits for it); said at once, as
  // send refuses to write a stream to one. node:tty only for a character device (it loads node:net)
  if (st?.isCharacterDevice() && (await import('node:tty')).isatty(0)) {
    throw new BtrfsTsError('INPUT_TTY', 'not reading a send stream from a terminal: pipe one in (btrfs send ... | btrfs-ts ...) or use -f FILE');
  }
  meter?.setTotal(st?.isFile() ? st.size : undefined);
  const chunks = streamChunks(() => process.stdin, 'stdin', meter);
  if (!st || !(st.isFile() || st.isFIFO() || st.isSocket())) return chunks; // a device (/dev/null, ...)
  // loaded here: node:net is ~4 ms that a receive from -f does without
  const { StdinInput } = await import('./stdin-input.js');
  return new StdinInput(0, st.isFile(), chunks, meter ? (n) => meter.advance(n) : undefined);
}

/**
 * The chunks of a readable made by `open` (process.stdin, a stream on a pipe's descriptor), decompressed
 * when its first bytes say so; made only when iterated (stdin's handle must not compete with a
 * StdinInput's). `label` names it in errors.
 */
function streamChunks(open: () => NodeJS.ReadableStream, label: string, meter?: ReadMeter): DestroyableInput {
  let inner: DestroyableInput | undefined;
  let source: NodeJS.ReadableStream | undefined;
  let failure: Error | undefined;
  return {
    async *[Symbol.asyncIterator]() {
      if (failure) throw failure;
      source = open();
      const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      const head: Buffer[] = [];
      let have = 0;
      let ended = false;
      while (have < MAGIC_BYTES) {
        const r = await it.next();
        if (r.done) {
          ended = true;
          break;
        }
        head.push(r.value);
        have += r.value.length;
        meter?.advance(r.value.length);
      }
      async function* all(): AsyncGenerator<Buffer> {
        yield* head;
        while (!ended) {
          const r = await it.next();
          if (r.done) return;
          meter?.advance(r.value.length);
          yield r.value;
        }
      }
      const kind = detectCompression(Buffer.concat(head).subarray(0, MAGIC_BYTES));
      if (!kind) {
        yield* all();
        return;
      }
      // node:stream loaded here only: a receive compiles node's own modules from source (its V8 flags)
      const { Readable } = await import('node:stream');
      inner = (await import('./decompress.js')).decompressed(Readable.from(all()), kind, label);
      yield* inner;
    },
    destroy(err: Error) {
      failure ??= err;
      if (inner) inner.destroy(err);
      else (source as { destroy?: (e: Error) => void } | undefined)?.destroy?.(err);
    },
  };
}
