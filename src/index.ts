/**
 * btrfs-ts as a library: parse, dump, plan, verify, convert and extract btrfs send streams without a
 * kernel. Everything that takes a stream takes `AsyncIterable<Uint8Array> | Iterable<Uint8Array>` (a
 * file read stream, `process.stdin`, or an array of buffers) and keeps memory bounded however large the
 * stream is. Every diagnosed problem is thrown as a {@link BtrfsTsError} subclass with offset, command
 * index and path.
 *
 * @example
 * ```ts
 * import { createReadStream } from 'node:fs';
 * import { verifyStream, dumpStream, extractStreams } from 'btrfs-ts';
 *
 * const report = await verifyStream(createReadStream('backup.stream'));
 * if (!report.ok) console.error(report.problems);
 * await dumpStream(createReadStream('backup.stream'), (line) => process.stdout.write(Buffer.from(line, 'latin1')));
 * await extractStreams(['full.stream', 'incr.stream'], '/restore');
 * ```
 * @packageDocumentation
 */

// ---- errors ----------------------------------------------------------------------------------------
/** The error classes: `BtrfsTsError` (base, with `code`/`offset`/`commandIndex`/`command`/`path`) and its
 * subclasses `StreamError` (bad stream bytes), `ReceiveError` (unappliable commands), `ImageError`,
 * `CodecError`. */
export { BtrfsTsError, StreamError, ReceiveError, ImageError, CodecError } from './errors.js';
export type { ErrorContext } from './errors.js';

// ---- stream layer ----------------------------------------------------------------------------------
/** Parses concatenated send streams into header and command items (CRC-checked, fully decoded). */
export { parseStream } from './stream/parser.js';
export type { ParseOptions } from './stream/parser.js';
/** Drives a {@link Receiver} (one callback per command, like btrfs-progs' send ops) over a stream. */
export { processStream } from './stream/receiver.js';
export type { Receiver, ProcessOptions, ProcessResult } from './stream/receiver.js';
/** Serializes commands and headers back to stream bytes (kernel attribute order, fresh CRCs). */
export { encodeCommand, encodeStreamHeader, writeStream } from './stream/writer.js';
/** Typed commands: paths are raw bytes, u64 values are bigint. */
export type * from './stream/types.js';
export { isUnknown } from './stream/types.js';
/** Wire numbering as in the kernel's send.h (`BTRFS_SEND_C_*`, `BTRFS_SEND_A_*`). */
export * as sendConstants from './stream/constants.js';

// ---- dump ------------------------------------------------------------------------------------------
/** `btrfs receive --dump` output, byte for byte, as binary strings (one char per byte). */
export { dumpStream, DumpReceiver, escapePath } from './dump/index.js';
export type { DumpOptions } from './dump/index.js';

// ---- codecs ----------------------------------------------------------------------------------------
/** Extent codecs in the kernel's formats (zlib, LZO with btrfs framing, zstd); call `initCodecs` first. */
export { initCodecs, decodeExtent, compressExtent, checkEncodedExtent, encodedToDisk, diskToEncoded } from './compress/index.js';
export type { BtrfsCompressType, EncodedWriteArgs, EncodedExtentCheck } from './compress/index.js';

// ---- planner ---------------------------------------------------------------------------------------
/** Whether an ENCODED_WRITE's compressed bytes can pass into an image unchanged, and why not. */
export { planEncodedWrite } from './plan/rules.js';
export type { PlanContext, PlanDecision, Reason, ReasonCode } from './plan/rules.js';
/** Walks a whole stream and plans every ENCODED_WRITE, with totals. */
export { PlanReceiver } from './plan/plan-receiver.js';
export type { PlanOptions } from './plan/plan-receiver.js';

// ---- stream tools ----------------------------------------------------------------------------------
/** Checks a stored stream without receiving it: CRCs, structure, encoded data, path sanity; never throws
 * for bad stream bytes (they become `problems`). */
export { verifyStream } from './tools/verify.js';
export type { VerifyOptions, VerifyReport, VerifyProblem, SubvolSummary, DataBytes } from './tools/verify.js';
/** Rewrites a stream: protocol 2 → 1, 1 → 2 with compression, re-parent, rename. Yields the new bytes. */
export { convertStream } from './tools/convert.js';
export type { ConvertOptions, ConvertStats } from './tools/convert.js';
/** Stream path sanity (`..`, absolute, empty components, NUL) and uuid helpers. */
export { checkStreamPath, formatUuid, parseUuid } from './tools/paths.js';
export type { PathCheck, PathProblem } from './tools/paths.js';
/** The file bytes an ENCODED_WRITE stands for (decoded, cut to its file range). */
export { encodedFileBytes } from './tools/encoded.js';
/** Receives streams into a plain directory on any filesystem (needs node:fs; python3 for ns times,
 * xattrs and special files). */
export { extractStreams } from './extract/stream.js';
export type { ExtractStreamOptions, ExtractResult, ExtractInput } from './extract/stream.js';

// ---- manifests -------------------------------------------------------------------------------------
/** The canonical tree listing used to compare received trees (docs/manifest.md). */
export { formatManifest } from './manifest/format.js';
export { diffManifests, renderDiff } from './manifest/compare.js';
export { dirTreeSource } from './dirtree/source.js';
export type { TreeSource, TreeEntry } from './manifest/types.js';

// ---- receive into an image / read an image -----------------------------------------------------------

/**
 * Apply send streams to a filesystem model: `receiveStreams(input, fs, opts)` commits once per completed
 * subvolume. Get `fs` from `createFilesystem(device)` (new image) or `openFilesystem(device)` (existing);
 * `FileDevice` opens image files.
 */
export { receiveStreams, resolveDest, ImageReceiver } from './receive/index.js';
export type { ReceiveOptions, ReceiveSummary, ReceivedSubvol, ImageReceiverOptions } from './receive/index.js';
/** `btrfs-ts receive` on an image file: refused while mounted, locked, made when missing, unchanged on failure. */
export { changeImage, receiveIntoImage } from './receive/image-file.js';
export type { ReceiveImageOptions, ReceiveImageResult } from './receive/image-file.js';
/** The image writer: an in-memory, load-modify-commit model of a single-device btrfs (docs/image-format.md). */
export { createFilesystem, openFilesystem, Filesystem } from './image/write/index.js';
export type { CreateOptions, GrowthOptions } from './image/write/index.js';
export { MemoryDevice, type BlockDevice } from './image/device.js';
export { FileDevice } from './io/image-file.js';
/**
 * The image reader: open any image and walk it without mounting (`openImageFile` for files; `openDeviceSet` for a
 * multi-device filesystem, from an image file of each device).
 */
export { BtrfsImage, fromBlockDevice, fromBytes } from './image/read/index.js';
export type { Location, DirEntry, SubvolumeInfo, ImageSource } from './image/read/index.js';
export { openImageFile } from './io/image-read-file.js';
export { openDeviceSet } from './io/device-set.js';
export type { OpenImageOptions } from './io/image-read-file.js';
/** Read an image file by path as node:fs reads a tree: readdir, stat, readFile, readlink, walk, close. */
export { openImage, OpenImage } from './image/open-image.js';
export type { ImageStat, ImageDirent, WalkEntry, ImagePath, ImageOpenOptions } from './image/open-image.js';
/** A TreeSource over an image directory, for `formatManifest`. */
export { imageTreeSource } from './image/read/tree-source.js';
/** compsize's numbers for paths of an image, and each quota group's usage as a quota rescan counts it. */
export { compsize, formatCompsize, type CompsizeTotals } from './tools/compsize.js';
export { qgroupUsage, type QgroupRow } from './tools/qgroup-usage.js';
export { rescanQgroups } from './tools/qgroup-rescan.js';
export { deleteSubvolumes, type DeletedSubvolume } from './tools/subvolume-delete.js';
export { rekeySnapshots, staleSnapshotKeys } from './tools/snapshot-keys.js';
export {
  snapshotSubvolume, createSubvolumes, getDefaultSubvolume, setDefaultSubvolume, getSubvolumeReadonly, setSubvolumeReadonly, getProperties,
  type SnapshotResult, type CreatedSubvolume, type ReadonlySet,
} from './tools/subvolume-ops.js';
/** CI replay: receive streams into a scratch image and compare with a stored manifest. */
export { replay } from './replay/index.js';
export type { ReplayOptions, ReplayResult } from './replay/index.js';
/** Full send from an image: the kernel's stream for a read-only subvolume, as bytes (docs/send.md). */
export { sendSubvolume, sendSubvolumes, sendProtocol } from './send/index.js';
export type { SendImage, SendOptions } from './send/index.js';
/** Output buffers a send's consumer gives back once written (SendOptions.bufferPool). */
export { BufferPool } from './util/bytes.js';
export { SendError } from './errors.js';
