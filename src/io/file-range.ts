/**
 * Where bytes in memory came from in a file, so that a writer can take them from the file itself. A
 * receive from a mapped stream file (mapped-input.ts) holds each command's DATA as a view of the file's
 * pages; an encoded extent stored as it came is written to the image with copy_file_range(2) from the
 * stream file (write-behind.ts), inside the kernel, instead of being copied into the writer's ring first:
 * that copy was ~40 ms of a 0.66 s comp-zstd-v2 receive's main thread (docs/performance.md, eleventh
 * session).
 */

/** A stream file being read: its descriptor, open for as long as the reader is. */
export class InputFile {
  constructor(readonly fd: number) {}
}

/** Bytes of `file` starting at `offset`. */
export interface FileRange {
  file: InputFile;
  offset: number;
}

/** Mapping buffers (mapped-input.ts) and the file offset of their first byte. */
const mappings = new WeakMap<ArrayBufferLike, FileRange>();

/** `buffer` maps `file` from `offset` on. */
export function registerMapping(buffer: ArrayBufferLike, file: InputFile, offset: number): void {
  mappings.set(buffer, { file, offset });
}

/**
 * Where the bytes of `view` are in the file it maps, or undefined when it is not a view of a mapping.
 * Only for bytes nobody changed in memory (a private mapping may be written to): the caller vouches.
 */
export function fileRangeOf(view: Uint8Array): FileRange | undefined {
  const m = mappings.get(view.buffer);
  return m && { file: m.file, offset: m.offset + view.byteOffset };
}
