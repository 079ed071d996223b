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
  return processStream(input, new DumpReceiver(sink), { ...opts, stopAfterFirstEnd: !opts.allStreams });
}
