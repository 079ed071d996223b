import { StreamError } from '../errors.js';
import { type BufferPool, placeInto, uninitBytes } from '../util/bytes.js';
import * as C from './constants.js';
import { commandAttrs } from './decode.js';
import { isUnknown, type KnownCommand, type SendCommand, type StreamItem, type Timespec } from './types.js';
import { encodeSentInto, sealCommand, sentSize } from './writer-sent.js';

const MAGIC = new TextEncoder().encode(C.BTRFS_SEND_STREAM_MAGIC + '\0');

export function encodeStreamHeader(version: number): Uint8Array {
  const out = new Uint8Array(C.BTRFS_STREAM_HEADER_SIZE);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(13, version, true);
  return out;
}

/** How an attribute's value is stored: which typed field holds it and in what wire form. */
const enum Kind { U64, U32, U8, TIME, BYTES }

/** Attribute type → [field of the typed command, wire form]; the decoder's fields in reverse. */
const ATTR_LIST: readonly (readonly [number, readonly [string, Kind]])[] = [
  [C.BTRFS_SEND_A_UUID, ['uuid', Kind.BYTES]], [C.BTRFS_SEND_A_CTRANSID, ['ctransid', Kind.U64]],
  [C.BTRFS_SEND_A_INO, ['ino', Kind.U64]], [C.BTRFS_SEND_A_SIZE, ['size', Kind.U64]],
  [C.BTRFS_SEND_A_MODE, ['mode', Kind.U64]], [C.BTRFS_SEND_A_UID, ['uid', Kind.U64]],
  [C.BTRFS_SEND_A_GID, ['gid', Kind.U64]], [C.BTRFS_SEND_A_RDEV, ['rdev', Kind.U64]],
  [C.BTRFS_SEND_A_CTIME, ['ctime', Kind.TIME]], [C.BTRFS_SEND_A_MTIME, ['mtime', Kind.TIME]],
  [C.BTRFS_SEND_A_ATIME, ['atime', Kind.TIME]], [C.BTRFS_SEND_A_OTIME, ['otime', Kind.TIME]],
  [C.BTRFS_SEND_A_XATTR_NAME, ['name', Kind.BYTES]], [C.BTRFS_SEND_A_XATTR_DATA, ['data', Kind.BYTES]],
  [C.BTRFS_SEND_A_PATH, ['path', Kind.BYTES]], [C.BTRFS_SEND_A_PATH_TO, ['pathTo', Kind.BYTES]],
  [C.BTRFS_SEND_A_PATH_LINK, ['pathLink', Kind.BYTES]], [C.BTRFS_SEND_A_FILE_OFFSET, ['fileOffset', Kind.U64]],
  [C.BTRFS_SEND_A_DATA, ['data', Kind.BYTES]], [C.BTRFS_SEND_A_CLONE_UUID, ['cloneUuid', Kind.BYTES]],
  [C.BTRFS_SEND_A_CLONE_CTRANSID, ['cloneCtransid', Kind.U64]], [C.BTRFS_SEND_A_CLONE_PATH, ['clonePath', Kind.BYTES]],
  [C.BTRFS_SEND_A_CLONE_OFFSET, ['cloneOffset', Kind.U64]], [C.BTRFS_SEND_A_CLONE_LEN, ['cloneLen', Kind.U64]],
  [C.BTRFS_SEND_A_FALLOCATE_MODE, ['mode', Kind.U32]], [C.BTRFS_SEND_A_FILEATTR, ['fileattr', Kind.U64]],
  [C.BTRFS_SEND_A_UNENCODED_FILE_LEN, ['unencodedFileLen', Kind.U64]], [C.BTRFS_SEND_A_UNENCODED_LEN, ['unencodedLen', Kind.U64]],
  [C.BTRFS_SEND_A_UNENCODED_OFFSET, ['unencodedOffset', Kind.U64]], [C.BTRFS_SEND_A_COMPRESSION, ['compression', Kind.U32]],
  [C.BTRFS_SEND_A_ENCRYPTION, ['encryption', Kind.U32]], [C.BTRFS_SEND_A_VERITY_ALGORITHM, ['algorithm', Kind.U8]],
  [C.BTRFS_SEND_A_VERITY_BLOCK_SIZE, ['blockSize', Kind.U32]], [C.BTRFS_SEND_A_VERITY_SALT_DATA, ['salt', Kind.BYTES]],
  [C.BTRFS_SEND_A_VERITY_SIG_DATA, ['sig', Kind.BYTES]],
];
/** The same indexed by type: two array loads per attribute instead of a Map lookup (every command of a send). */
const FIELD: (string | undefined)[] = [];
const KIND: Kind[] = [];
for (const [type, [field, kind]] of ATTR_LIST) {
  FIELD[type] = field;
  KIND[type] = kind;
}

type Typed = Exclude<SendCommand, { unknown: true }>;

/** The value's length on the wire, or -1 when the command lacks the attribute. */
function valueLen(c: Typed, type: number, extra: Uint8Array | undefined): number {
  if (extra) return extra.length;
  const field = FIELD[type];
  if (field === undefined) return -1;
  const v = (c as unknown as Record<string, unknown>)[field];
  switch (KIND[type]) {
    case Kind.U64: return typeof v === 'bigint' ? 8 : -1;
    case Kind.U32: return typeof v === 'number' ? 4 : -1;
    case Kind.U8: return typeof v === 'number' ? 1 : -1;
    case Kind.TIME: return v !== undefined ? 12 : -1;
    default: return v instanceof Uint8Array ? v.length : -1;
  }
}

/** Writes the value of one present attribute at out[pos..]. */
function putValue(c: Typed, type: number, extra: Uint8Array | undefined, out: Uint8Array, dv: DataView, pos: number): void {
  if (extra) {
    out.set(extra, pos);
    return;
  }
  const v = (c as unknown as Record<string, unknown>)[FIELD[type]!];
  switch (KIND[type]) {
    case Kind.U64: dv.setBigUint64(pos, BigInt.asUintN(64, v as bigint), true); return;
    case Kind.U32: dv.setUint32(pos, (v as number) >>> 0, true); return;
    case Kind.U8: out[pos] = v as number; return;
    case Kind.TIME:
      dv.setBigUint64(pos, BigInt.asUintN(64, (v as Timespec).sec), true);
      dv.setUint32(pos + 8, (v as Timespec).nsec >>> 0, true);
      return;
    default:
      // already there: read straight into the output (StreamEncoder.dataRoom)
      placeInto(out, v as Uint8Array, pos);
  }
}

/** Attribute order: the parser's (`meta.attrOrder`) when it saw one, else the kernel's. */
const orderOf = (c: Typed): readonly number[] => (c.meta?.attrOrder.length ? c.meta.attrOrder : commandAttrs(c.cmd));
const extraOf = (c: Typed, type: number): Uint8Array | undefined => c.meta?.extraAttrs?.find((a) => a.type === type)?.value;

/** Bytes `c` takes on the wire, header included. */
export function commandSize(c: SendCommand, version: number): number {
  if (isUnknown(c)) return C.BTRFS_CMD_HEADER_SIZE + c.payload.length;
  let size = C.BTRFS_CMD_HEADER_SIZE;
  for (const type of orderOf(c)) {
    const n = valueLen(c, type, extraOf(c, type));
    if (n >= 0) size += n + (isImplicitLen(type, version) ? 2 : 4);
  }
  return size;
}

/**
 * Serializes `c` (header, attributes, CRC) into out[pos .. pos + commandSize(c)), which the caller sized;
 * returns the end. No allocation: the send path encodes straight into its output buffer.
 */
export function encodeCommandInto(c: SendCommand, version: number, out: Uint8Array, pos: number): number {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const start = pos;
  pos += C.BTRFS_CMD_HEADER_SIZE;
  // where DATA went, when the command brings that data's CRC (a send): the command CRC is then combined
  // around it instead of passing over the data again
  const dataCrc = 'dataCrc' in c ? c.dataCrc : undefined;
  let dataAt = -1;
  let dataLen = 0;
  if (isUnknown(c)) {
    out.set(c.payload, pos);
    pos += c.payload.length;
  } else {
    for (const type of orderOf(c)) {
      const extra = extraOf(c, type);
      const n = valueLen(c, type, extra);
      if (n < 0) continue;
      dv.setUint16(pos, type, true);
      pos += 2;
      if (!isImplicitLen(type, version)) {
        if (n > 0xffff) {
          throw new StreamError('ATTR_TOO_LONG', `attribute ${C.sendAttrName(type)} of ${n} bytes does not fit a v${version} TLV`, { command: C.sendCommandName(c.cmd) });
        }
        dv.setUint16(pos, n, true);
        pos += 2;
      }
      putValue(c, type, extra, out, dv, pos);
      if (type === C.BTRFS_SEND_A_DATA && !extra) {
        dataAt = pos;
        dataLen = n;
      }
      pos += n;
    }
  }
  return sealCommand(out, dv, start, pos, c.cmd, dataAt, dataLen, dataCrc);
}

/**
 * Serializes one command with header and CRC. Attributes come from the typed fields, in the order the parser
 * saw them (`meta.attrOrder`) or else in the kernel's order, so parse → encode reproduces kernel bytes.
 */
export function encodeCommand(c: SendCommand, version: number): Uint8Array {
  const out = new Uint8Array(commandSize(c, version));
  encodeCommandInto(c, version, out, 0);
  return out;
}

/**
 * Encodes a stream into large buffers (one copy of each command's bytes, no per-command allocation):
 * `add` commands, take the `full` buffers as they fill, `end()` for the rest. Buffers handed out are
 * never written again — a consumer may keep or queue them (write-behind).
 */
export class StreamEncoder {
  private buf: Uint8Array;
  /** A view of `buf` for the commands encodeSentInto writes (one per buffer, not one per command). */
  private dv: DataView;
  private pos = 0;
  /** Filled buffers not yet taken. */
  full: Uint8Array[] = [];
  /** The last dataRoom and the command size it was taken for, until the next add. */
  private reserved: { view: Uint8Array; size: number } | undefined;

  /** With a `pool`, buffers come from it (its size is the chunk size) and a consumer may give them back. */
  constructor(private readonly version: number, private chunk = 1 << 20, private readonly pool?: BufferPool) {
    if (pool) this.chunk = pool.size;
    this.buf = this.fresh(this.chunk);
    this.dv = viewOf(this.buf);
  }

  private fresh(n: number): Uint8Array {
    return this.pool && n <= this.pool.size ? this.pool.take() : uninitBytes(n);
  }

  header(): void {
    this.room(C.BTRFS_STREAM_HEADER_SIZE);
    this.buf.set(encodeStreamHeader(this.version), this.pos);
    this.pos += C.BTRFS_STREAM_HEADER_SIZE;
  }

  add(c: SendCommand): void {
    // a send's own command of the common kinds: writer-sent.ts, the same bytes
    const sent = sentSize(c, this.version);
    const size = sent >= 0 ? sent : commandSize(c, this.version);
    const r = this.reserved;
    this.reserved = undefined;
    // data read into a room for a command that has grown since (an attribute set after dataRoom) would be
    // overwritten by its own attributes: it is taken out first
    if (r && size !== r.size && !isUnknown(c) && 'data' in c && c.data === r.view) c.data = r.view.slice();
    this.room(size);
    this.pos = sent >= 0 ? encodeSentInto(c as KnownCommand, this.version, this.buf, this.dv, this.pos) : encodeCommandInto(c, this.version, this.buf, this.pos);
  }

  /**
   * Where the DATA of `c` will land when `c` is added next, for `n` bytes of it: a send reads an extent's
   * stored bytes there (an ENCODED_WRITE, whose DATA is its last attribute) instead of into a buffer of
   * its own, and adding `c` with that view as its data copies nothing. `c.data` holds a placeholder
   * meanwhile (its length does not count). Undefined when DATA is not the last attribute. Valid until the
   * next add.
   */
  dataRoom(c: SendCommand, n: number): Uint8Array | undefined {
    if (isUnknown(c)) return undefined;
    const order = orderOf(c);
    if (order[order.length - 1] !== C.BTRFS_SEND_A_DATA || extraOf(c, C.BTRFS_SEND_A_DATA)) return undefined;
    const size = commandSize(c, this.version) - Math.max(0, valueLen(c, C.BTRFS_SEND_A_DATA, undefined)) + n;
    this.room(size);
    const view = this.buf.subarray(this.pos + size - n, this.pos + size);
    this.reserved = { view, size };
    return view;
  }

  /** Everything not yet taken, the partly filled buffer last. */
  end(): Uint8Array[] {
    const out = this.take();
    if (this.pos > 0) out.push(this.buf.subarray(0, this.pos));
    this.buf = new Uint8Array(0); // the next add takes a buffer
    this.dv = viewOf(this.buf);
    this.pos = 0;
    return out;
  }

  take(): Uint8Array[] {
    const out = this.full;
    this.full = [];
    return out;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.pos > 0) this.full.push(this.buf.subarray(0, this.pos));
    this.buf = this.fresh(Math.max(this.chunk, n));
    this.dv = viewOf(this.buf);
    this.pos = 0;
  }
}

const viewOf = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

function isImplicitLen(type: number, version: number): boolean {
  return version >= 2 && type === C.BTRFS_SEND_A_DATA;
}

/** Serializes parser items back to bytes (headers and commands), e.g. after filtering or rewriting. */
export async function* writeStream(items: AsyncIterable<StreamItem> | Iterable<StreamItem>): AsyncGenerator<Uint8Array> {
  let version = 1;
  for await (const it of items) {
    if (it.kind === 'header') {
      version = it.version;
      yield encodeStreamHeader(version);
    } else {
      yield encodeCommand(it.command, it.command.meta.version ?? version);
    }
  }
}
