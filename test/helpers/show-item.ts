import { crc32cRaw } from '../../src/util/crc32c.js';

/**
 * A parsed stream item as comparable text: bigints with an n, byte fields as hex, DATA by its CRC (so a
 * view of reused input shows up as changed). Buffers and Uint8Arrays print alike (the replacer sees a
 * Buffer after its toJSON: look at the holder).
 */
export const showItem = (c: unknown): string => JSON.stringify(c, function (this: Record<string, unknown>, k: string, v: unknown) {
  const raw = this[k];
  if (typeof raw === 'bigint') return `${raw}n`;
  if (raw instanceof Uint8Array) return k === 'data' ? `crc:${crc32cRaw(raw)}` : Buffer.from(raw).toString('hex');
  return v;
});
