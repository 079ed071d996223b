import { InvalidArgumentError } from 'commander';
import { BTRFS_COMPRESS_LZO, BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_ZSTD, type BtrfsCompressType } from '../compress/index.js';

export interface CompressChoice {
  type: BtrfsCompressType;
  level?: number;
}

const TYPES: Record<string, { type: BtrfsCompressType; min: number; max: number }> = {
  zlib: { type: BTRFS_COMPRESS_ZLIB, min: 1, max: 9 },
  lzo: { type: BTRFS_COMPRESS_LZO, min: 0, max: 0 },
  zstd: { type: BTRFS_COMPRESS_ZSTD, min: -15, max: 15 },
};

/** `zlib`, `lzo`, `zstd`, optionally `:LEVEL`, with the level ranges of the kernel's compress= option. */
export function parseCompress(v: string): CompressChoice {
  const m = /^(zlib|lzo|zstd)(?::(-?\d+))?$/.exec(v);
  if (!m) throw new InvalidArgumentError('expected zlib, lzo or zstd, optionally with :LEVEL');
  const t = TYPES[m[1]!]!;
  if (m[2] === undefined) return { type: t.type };
  const level = Number(m[2]);
  if (m[1] === 'lzo' || level < t.min || level > t.max) {
    throw new InvalidArgumentError(m[1] === 'lzo' ? 'lzo takes no level' : `${m[1]} levels are ${t.min}..${t.max}`);
  }
  return { type: t.type, level };
}

/** Sizes as mkfs.btrfs takes them: plain bytes or with a K/M/G/T/P/E suffix (binary; "MiB", "MB" too). */
export function parseSize(v: string): bigint {
  const m = /^(\d+)\s*([kmgtpe]?)(i?b)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`bad size ${JSON.stringify(v)}`);
  const exp = ' kmgtpe'.indexOf((m[2] || ' ').toLowerCase());
  return BigInt(m[1]!) << BigInt(10 * exp);
}

export function parseIntArg(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`not a number: ${v}`);
  return Number(v);
}
