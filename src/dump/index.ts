import { processStream, type ProcessOptions, type ProcessResult } from '../stream/receiver.js';
import { DumpReceiver } from './dump-receiver.js';

export { DumpReceiver } from './dump-receiver.js';
export { escapePath } from './escape.js';
export { formatDumpTime } from './time.js';

export interface DumpOptions extends ProcessOptions {
  /** Dump every stream of a multi-stream input; btrfs-progs stops at the first END. */
  allStreams?: boolean;
}

/**
 * Dumps a stream into `sink` (binary strings: one char per byte). Resolves with the totals, or rejects with
 * the first error after every line before it has reached the sink.
 */
export async function dumpStream(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  sink: (line: string) => void,
  opts: DumpOptions = {},
): Promise<ProcessResult> {
  // The printer turns each command into a line and keeps no view of it, so a recycling source may refill
  // its chunks (a dump of a 1 GiB stream allocates a few read buffers instead of a thousand) and no
  // attribute needs a copy.
  return processStream(input, new DumpReceiver(sink), { reuseInput: true, transientAttrs: true, ...opts, stopAfterFirstEnd: !opts.allStreams });
}
