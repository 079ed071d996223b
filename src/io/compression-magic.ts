/**
 * Which compression a stream file is in, from its first bytes — apart from the decompressors
 * (decompress.ts, which loads node:zlib and child_process), so reading a plain stream loads neither.
 */
export type Compression = 'zstd' | 'gzip' | 'xz';

const MAGICS: { kind: Compression; magic: number[] }[] = [
  { kind: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd] },
  { kind: 'gzip', magic: [0x1f, 0x8b] },
  { kind: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
];
/** Bytes needed to tell the formats apart. */
export const MAGIC_BYTES = 6;

/** Which compression the first bytes of a file announce (a send stream starts with "btrfs-stream"). */
export function detectCompression(head: Uint8Array): Compression | undefined {
  return MAGICS.find((m) => m.magic.every((b, i) => head[i] === b))?.kind;
}

/** An input whose waiting read can be broken off (Ctrl-C in receive), as process.stdin can be. */
export interface DestroyableInput extends AsyncIterable<Uint8Array> {
  destroy(err: Error): void;
}
