/** Let timers and signal handlers run (progress, Ctrl-C) after this many bytes read without a pause. */
export const YIELD_EVERY = 16 << 20;

/**
 * What a stream reader does with each piece it makes available: tells the progress meter, and after every
 * YIELD_EVERY bytes lets the event loop turn once. A file read without a pause — read(2) into a window, or
 * a mapping (window-input.ts, mapped-input.ts) — otherwise holds off timers and signals until its end.
 */
export class ReadProgress {
  private sinceYield = 0;

  constructor(private readonly onRead?: (bytes: number) => void) {}

  /** `bytes` more are available: a promise to await when the event loop should turn now, else undefined. */
  advance(bytes: number): Promise<void> | undefined {
    this.onRead?.(bytes);
    this.sinceYield += bytes;
    if (this.sinceYield < YIELD_EVERY) return undefined;
    this.sinceYield = 0;
    return new Promise<void>((resolve) => setImmediate(resolve));
  }
}
