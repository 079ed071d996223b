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
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw new BtrfsTsError('input-open', `cannot open ${file}: ${(e as Error).message}`, { cause: e });
  }
  // a directory opens fine and fails only at the first read, with no name attached
  if ((await fh.stat()).isDirectory()) {
    await fh.close();
    throw new BtrfsTsError('input-open', `cannot read ${file}: is a directory, not a send stream`);
  }
  return new PooledFileInput(fh, CHUNK);
}

export function fileChunks(file: string): AsyncIterable<Uint8Array> {
  return createReadStream(file, { highWaterMark: CHUNK });
}
