import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { BtrfsTsError } from '../errors.js';
import { PooledFileInput } from './pooled-input.js';

/** 1 MiB reads: large enough that per-chunk overhead vanishes, small enough to keep memory flat. */
const CHUNK = 1 << 20;

/**
 * A send stream source: a file (`-f`) or stdin. Opening fails early with a clear error instead of inside
 * the parser's first read.
 */
export async function openInput(file: string | undefined): Promise<AsyncIterable<Uint8Array>> {
  if (file === undefined || file === '-') return process.stdin;
  try {
    const fh = await open(file, 'r');
    return new PooledFileInput(fh, CHUNK);
  } catch (e) {
    throw new BtrfsTsError('input-open', `cannot open ${file}: ${(e as Error).message}`, { cause: e });
  }
}

export function fileChunks(file: string): AsyncIterable<Uint8Array> {
  return createReadStream(file, { highWaterMark: CHUNK });
}
