import { existsSync, readdirSync } from 'node:fs';
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
