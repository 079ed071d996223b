import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const STREAMS_DIR = join(__dirname, '..', '..', 'streams');

/** Every captured stream in streams/, by file name. */
export function capturedStreams(): string[] {
  if (!existsSync(STREAMS_DIR)) return [];
  return readdirSync(STREAMS_DIR).filter((f) => f.endsWith('.stream')).sort();
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** A manifest stored beside the captured streams (made from the kernel's own receive), as lines. */
export function storedManifest(file: string): string[] {
  return readFileSync(join(STREAMS_DIR, file), 'latin1').trimEnd().split('\n');
}
