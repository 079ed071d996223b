import { StreamError, type ErrorContext } from '../errors.js';
import { crc32cRaw } from '../util/crc32c.js';
import { CRC_SECTOR, crc32cRawBySector } from '../util/crc32c-combine.js';
import { AttrTable } from './attrs.js';
import * as C from './constants.js';
import { decodeCommand, isKnownCommand } from './decode.js';
import { ChunkReader, isWindowSource, type ByteReader } from './source.js';
import type { CommandMeta, EncodedWriteCmd, StreamItem, WriteCmd } from './types.js';

export interface ParseOptions {
  /** Largest command payload accepted before allocating (default 16 MiB). */
  maxCommandLen?: number;
  /** Stop after the first END, like `btrfs receive -e` (and like `--dump`, which never reads further). */
  stopAfterFirstEnd?: boolean;
  /** Skip CRC verification (only for tools that must read damaged streams). */
  noCrc?: boolean;
  /**
   * The consumer keeps nothing of a command past asking for the next item, except copies: a recycling
   * source may then refill its chunks. Attributes other than DATA are copied for it (paths, uuids,
   * xattrs are small and often kept); DATA stays a view, as documented on the write commands.
   */
  reuseInput?: boolean;
  /** Keep the raw CRC of each 4 KiB piece of WRITE / ENCODED_WRITE data (dataSectorCrcs), for receive. */
  sectorCrcs?: boolean;
}

const MAGIC = new TextEncoder().encode(C.BTRFS_SEND_STREAM_MAGIC + '\0');

/** Sector CRCs left by the CRC check, beside the commands rather than in them (their shape is the API). */
const SECTOR_CRCS = new WeakMap<object, Uint32Array>();

/**
 * Raw CRC32C (seed 0, no inversion) of each whole 4096-byte piece of a WRITE's or ENCODED_WRITE's data,
 * from its start, as the parser's CRC check computed them (undefined without the check or under 4 KiB):
 * where the bytes land in an extent sector for sector, they give its checksums (crc32c-combine.ts).
 */
export function dataSectorCrcs(c: WriteCmd | EncodedWriteCmd): Uint32Array | undefined {
  return SECTOR_CRCS.get(c);
}

/**
 * Parses one or more concatenated send streams. Yields a `header` item per stream and a `command` item per
 * command. Every command is length-capped, CRC-checked and fully decoded before it is yielded, so a consumer
 * never acts on a command that turns out to be corrupt. A command's data is a view, valid until the consumer
 * asks for the next item; nothing is accumulated across commands.
 */
export async function* parseStream(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: ParseOptions = {},
): AsyncGenerator<StreamItem, void, undefined> {
  const maxLen = opts.maxCommandLen ?? C.DEFAULT_MAX_COMMAND_LEN;
  const r: ByteReader = opts.reuseInput && isWindowSource(input) ? input.openWindow() : new ChunkReader(input, { reuse: opts.reuseInput ?? false });
  const reuse = r.reusing;
  let index = 0;
  let streamIndex = -1;
  try {
    for (;;) {
      // Between streams: EOF is the normal end, anything else must be a new header.
      r.releaseSpent();
      const hdrOffset = r.position;
      const got = await r.fill(C.BTRFS_STREAM_HEADER_SIZE);
      if (got === 0) {
        if (streamIndex < 0) throw new StreamError('EMPTY_INPUT', 'input is empty: no send stream header', { offset: 0 });
        return;
      }
      const headerCtx: ErrorContext = { offset: hdrOffset, commandIndex: index, command: 'stream header' };
      if (got < C.BTRFS_STREAM_HEADER_SIZE) {
        const head = r.take(got);
        if (!startsWithMagicPrefix(head)) throw badMagic(headerCtx, streamIndex);
        throw new StreamError('TRUNCATED_HEADER', `stream header truncated: ${got} of ${C.BTRFS_STREAM_HEADER_SIZE} bytes`, headerCtx);
      }
      const hdr = r.take(C.BTRFS_STREAM_HEADER_SIZE);
      if (!startsWithMagicPrefix(hdr)) throw badMagic(headerCtx, streamIndex);
      const version = (hdr[13]! | (hdr[14]! << 8) | (hdr[15]! << 16) | (hdr[16]! << 24)) >>> 0;
      if (version < C.BTRFS_SEND_STREAM_VERSION_MIN || version > C.BTRFS_SEND_STREAM_VERSION_MAX) {
        throw new StreamError('UNSUPPORTED_VERSION', `unsupported send stream version ${version} (supported: 1, 2, 3)`, headerCtx);
      }
      streamIndex++;
      yield { kind: 'header', version, offset: hdrOffset, streamIndex };

      for (;;) {
        // the consumer has asked for the next command: the previous one's chunks are free
        r.releaseSpent();
        const offset = r.position;
        const ctxBase = { offset, commandIndex: index };
        // buffered bytes are taken without an await: one microtask tick per command less
        const have = r.available >= C.BTRFS_CMD_HEADER_SIZE ? C.BTRFS_CMD_HEADER_SIZE : await r.fill(C.BTRFS_CMD_HEADER_SIZE);
        if (have === 0) throw new StreamError('MISSING_END', 'stream ends without an END command', { ...ctxBase, command: 'command header' });
        if (have < C.BTRFS_CMD_HEADER_SIZE) {
          throw new StreamError('TRUNCATED_COMMAND', `command header truncated: ${have} of ${C.BTRFS_CMD_HEADER_SIZE} bytes`, { ...ctxBase, command: 'command header' });
        }
        const h = r.take(C.BTRFS_CMD_HEADER_SIZE);
        const len = (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0;
        const cmd = h[4]! | (h[5]! << 8);
        const crc = (h[6]! | (h[7]! << 8) | (h[8]! << 16) | (h[9]! << 24)) >>> 0;
        const ctx: ErrorContext = { ...ctxBase, command: C.sendCommandName(cmd) };
        if (len > maxLen) {
          throw new StreamError('COMMAND_TOO_LONG', `command length ${len} exceeds the limit of ${maxLen} bytes`, ctx);
        }
        const avail = r.available >= len ? len : await r.fill(len);
        if (avail < len) {
          throw new StreamError('TRUNCATED_COMMAND', `command truncated: ${avail} of ${len} payload bytes`, ctx);
        }
        const payload = r.take(len);
        const payloadOffset = offset + C.BTRFS_CMD_HEADER_SIZE;
        let attrs: AttrTable | undefined;
        let sectors: Uint32Array | undefined;
        if (!opts.noCrc) {
          let actual: number;
          if (opts.sectorCrcs && (cmd === C.BTRFS_SEND_C_WRITE || cmd === C.BTRFS_SEND_C_ENCODED_WRITE) && len >= CRC_SECTOR) {
            ({ actual, attrs, sectors } = crcBySector(h, payload, version, ctx, payloadOffset));
          } else {
            actual = crc32cRaw(payload, crc32cRaw(zeroedHeader(h), 0));
          }
          if (actual !== crc) {
            throw new StreamError('CRC_MISMATCH', `CRC32C mismatch: header says 0x${hex8(crc)}, data gives 0x${hex8(actual)}`, ctx);
          }
        }
        attrs ??= AttrTable.parse(payload, version, () => ctx, payloadOffset);
        if (reuse) attrs.detach(C.BTRFS_SEND_A_DATA);
        const meta: CommandMeta = { offset, index, streamIndex, version, len, attrOrder: [] };
        // an unknown command keeps its raw payload
        const command = decodeCommand(cmd, reuse && !isKnownCommand(cmd) ? new Uint8Array(payload) : payload, attrs, meta);
        if (sectors !== undefined) SECTOR_CRCS.set(command, sectors);
        index++;
        yield { kind: 'command', command };
        if (cmd === C.BTRFS_SEND_C_END) break;
      }
      if (opts.stopAfterFirstEnd) return;
    }
  } finally {
    await r.close();
  }
}

function zeroedHeader(h: Uint8Array): Uint8Array {
  // a copy: Buffer#slice (chunks from node streams are Buffers) would zero the caller's bytes
  const zeroed = new Uint8Array(h);
  zeroed[6] = zeroed[7] = zeroed[8] = zeroed[9] = 0;
  return zeroed;
}

/**
 * The command CRC of a WRITE or ENCODED_WRITE, computed sector by sector over its DATA so that the raw CRC
 * of each whole 4 KiB piece comes out too: where a receive stores those bytes in an extent sector for
 * sector, the pieces' CRCs become the extent's checksums instead of a second pass (crc32c-combine.ts). Attributes that
 * do not parse are the parser's to report after the CRC check, as for any command: the CRC is then
 * computed in one piece and no attributes are returned.
 */
function crcBySector(h: Uint8Array, payload: Uint8Array, version: number, ctx: ErrorContext, payloadOffset: number): { actual: number; attrs?: AttrTable; sectors?: Uint32Array } {
  let attrs: AttrTable;
  try {
    attrs = AttrTable.parse(payload, version, () => ctx, payloadOffset);
  } catch {
    return { actual: crc32cRaw(payload, crc32cRaw(zeroedHeader(h), 0)) };
  }
  const data = attrs.values[C.BTRFS_SEND_A_DATA];
  if (data === undefined || data.buffer !== payload.buffer || data.length < CRC_SECTOR) {
    return { actual: crc32cRaw(payload, crc32cRaw(zeroedHeader(h), 0)), attrs };
  }
  const start = data.byteOffset - payload.byteOffset;
  const end = start + data.length;
  const sectors = new Uint32Array(Math.floor(data.length / CRC_SECTOR));
  let c = crc32cRaw(payload.subarray(0, start), crc32cRaw(zeroedHeader(h), 0));
  c = crc32cRawBySector(c, data, sectors);
  return { actual: crc32cRaw(payload.subarray(end), c), attrs, sectors };
}

function startsWithMagicPrefix(b: Uint8Array): boolean {
  const n = Math.min(b.length, MAGIC.length);
  for (let i = 0; i < n; i++) if (b[i] !== MAGIC[i]) return false;
  return true;
}

function badMagic(ctx: ErrorContext, streamIndex: number): StreamError {
  const what = streamIndex < 0 ? 'not a btrfs send stream' : 'data after END is not a new stream header';
  return new StreamError('BAD_MAGIC', `${what}: expected magic "btrfs-stream\\0"`, ctx);
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}
