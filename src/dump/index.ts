import { BtrfsTsError } from '../errors.js';
import * as C from '../stream/constants.js';
import { StreamParser } from '../stream/parser.js';
import { commandContext, dispatch, type ProcessOptions, type ProcessResult } from '../stream/receiver.js';
import { bytesToBin, DumpReceiver } from './dump-receiver.js';
import { DumpLines } from './fast-lines.js';

export { DumpReceiver } from './dump-receiver.js';
export { escapePath } from './escape.js';
export { formatDumpTime } from './time.js';

export interface DumpOptions extends ProcessOptions {
  /** Dump every stream of a multi-stream input; btrfs-progs stops at the first END. */
  allStreams?: boolean;
}

/** Output handed to a byte sink once this much is buffered (and at the end, and before an error). */
const HAND_OVER = 64 << 10;

/**
 * Dumps a stream into `sink` (binary strings: one char per byte, a line per call). Resolves with the
 * totals, or rejects with the first error after every line before it has reached the sink.
 */
export function dumpStream(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  sink: (line: string) => void,
  opts: DumpOptions = {},
): Promise<ProcessResult> {
  return drive(input, (buf, n) => sink(bytesToBin(buf.subarray(0, n))), 0, opts);
}

/**
 * As dumpStream, with the output as bytes in pieces of whole lines (the CLI's): `write` gets a view that
 * is reused after it returns (or after its promise settles).
 */
export function dumpStreamBytes(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  write: (bytes: Uint8Array) => void | Promise<void>,
  opts: DumpOptions = {},
): Promise<ProcessResult> {
  return drive(input, (buf, n) => write(buf.subarray(0, n)), HAND_OVER, opts);
}

/**
 * processStream with DumpReceiver, except that most commands are formatted from their verified bytes
 * (DumpLines) instead of being decoded into objects first; the others, and every error, go the way they
 * always did. Output goes to `out` once `handOver` bytes are buffered (0: after every line).
 */
async function drive(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  out: (buf: Uint8Array, n: number) => void | Promise<void>,
  handOver: number,
  opts: DumpOptions,
): Promise<ProcessResult> {
  const res: ProcessResult = { streams: 0, commands: 0, bytes: 0 };
  const lines = new DumpLines();
  const receiver = new DumpReceiver((line) => lines.appendBinary(line));
  // The printer keeps no view of a command past its line, so a recycling source may refill its chunks
  // and no attribute needs a copy.
  const parser = new StreamParser(input, { reuseInput: true, transientAttrs: true, ...opts, stopAfterFirstEnd: !opts.allStreams });
  const handOut = async (): Promise<void> => {
    const n = lines.pos;
    lines.pos = 0;
    const p = out(lines.buf, n);
    if (p instanceof Promise) await p;
  };
  try {
    for (;;) {
      // pulled, not iterated: an item whose bytes are buffered costs no promise turn
      const x = parser.nextRaw();
      const item = x instanceof Promise ? await x : x;
      if (item === null) break;
      if (item.kind === 'header') {
        res.streams++;
        res.bytes = item.offset + C.BTRFS_STREAM_HEADER_SIZE;
        continue;
      }
      if (!lines.format(parser.rawCmd, parser.rawPayload, parser.rawAttrs, receiver.subvolume)) {
        const c = parser.decodeRaw().command;
        try {
          dispatch(receiver, c);
        } catch (e) {
          if (e instanceof BtrfsTsError) e.withContext(commandContext(c));
          throw e;
        }
      }
      res.commands++;
      res.bytes = parser.rawEnd;
      if (lines.pos > handOver) await handOut();
      if (opts.afterCommand) {
        const q = opts.afterCommand(res);
        if (q instanceof Promise) await q;
      }
    }
  } catch (e) {
    if (lines.pos > 0) await handOut();
    throw e;
  } finally {
    await parser.close();
  }
  if (lines.pos > 0) await handOut();
  return res;
}
