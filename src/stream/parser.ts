import { StreamError, type ErrorContext } from '../errors.js';
import { crc32cRaw } from '../util/crc32c.js';
import { AttrTable } from './attrs.js';
import * as C from './constants.js';
import { decodeCommand, isKnownCommand } from './decode.js';
import { ChunkReader } from './source.js';
import type { CommandMeta, StreamItem } from './types.js';

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
}

const MAGIC = new TextEncoder().encode(C.BTRFS_SEND_STREAM_MAGIC + '\0');

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
  const r = new ChunkReader(input, { reuse: opts.reuseInput ?? false });
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
        if (streamIndex < 0) throw new StreamError('empty-input', 'input is empty: no send stream header', { offset: 0 });
        return;
      }
      const headerCtx: ErrorContext = { offset: hdrOffset, commandIndex: index, command: 'stream header' };
      if (got < C.BTRFS_STREAM_HEADER_SIZE) {
        const head = r.take(got);
        if (!startsWithMagicPrefix(head)) throw badMagic(headerCtx, streamIndex);
        throw new StreamError('truncated-header', `stream header truncated: ${got} of ${C.BTRFS_STREAM_HEADER_SIZE} bytes`, headerCtx);
      }
      const hdr = r.take(C.BTRFS_STREAM_HEADER_SIZE);
      if (!startsWithMagicPrefix(hdr)) throw badMagic(headerCtx, streamIndex);
      const version = (hdr[13]! | (hdr[14]! << 8) | (hdr[15]! << 16) | (hdr[16]! << 24)) >>> 0;
      if (version < C.BTRFS_SEND_STREAM_VERSION_MIN || version > C.BTRFS_SEND_STREAM_VERSION_MAX) {
        throw new StreamError('unsupported-version', `unsupported send stream version ${version} (supported: 1, 2, 3)`, headerCtx);
      }
      streamIndex++;
      yield { kind: 'header', version, offset: hdrOffset, streamIndex };

      for (;;) {
        // the consumer has asked for the next command: the previous one's chunks are free
        r.releaseSpent();
        const offset = r.position;
        const ctxBase = { offset, commandIndex: index };
        const have = await r.fill(C.BTRFS_CMD_HEADER_SIZE);
        if (have === 0) throw new StreamError('missing-end', 'stream ends without an END command', { ...ctxBase, command: 'command header' });
        if (have < C.BTRFS_CMD_HEADER_SIZE) {
          throw new StreamError('truncated-command', `command header truncated: ${have} of ${C.BTRFS_CMD_HEADER_SIZE} bytes`, { ...ctxBase, command: 'command header' });
        }
        const h = r.take(C.BTRFS_CMD_HEADER_SIZE);
        const len = (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0;
        const cmd = h[4]! | (h[5]! << 8);
        const crc = (h[6]! | (h[7]! << 8) | (h[8]! << 16) | (h[9]! << 24)) >>> 0;
        const ctx: ErrorContext = { ...ctxBase, command: C.sendCommandName(cmd) };
        if (len > maxLen) {
          throw new StreamError('command-too-long', `command length ${len} exceeds the limit of ${maxLen} bytes`, ctx);
        }
        const avail = await r.fill(len);
        if (avail < len) {
          throw new StreamError('truncated-command', `command truncated: ${avail} of ${len} payload bytes`, ctx);
        }
        const payload = r.take(len);
        if (!opts.noCrc) {
          // a copy: Buffer#slice (chunks from node streams are Buffers) would zero the caller's bytes
          const zeroed = new Uint8Array(h);
          zeroed[6] = zeroed[7] = zeroed[8] = zeroed[9] = 0;
          const actual = crc32cRaw(payload, crc32cRaw(zeroed, 0));
          if (actual !== crc) {
            throw new StreamError('crc-mismatch', `CRC32C mismatch: header says 0x${hex8(crc)}, data gives 0x${hex8(actual)}`, ctx);
          }
        }
        const attrs = AttrTable.parse(payload, version, () => ctx, offset + C.BTRFS_CMD_HEADER_SIZE);
        if (reuse) attrs.detach(C.BTRFS_SEND_A_DATA);
        const meta: CommandMeta = { offset, index, streamIndex, version, len, attrOrder: [] };
        // an unknown command keeps its raw payload
        const command = decodeCommand(cmd, reuse && !isKnownCommand(cmd) ? new Uint8Array(payload) : payload, attrs, meta);
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

function startsWithMagicPrefix(b: Uint8Array): boolean {
  const n = Math.min(b.length, MAGIC.length);
  for (let i = 0; i < n; i++) if (b[i] !== MAGIC[i]) return false;
  return true;
}

function badMagic(ctx: ErrorContext, streamIndex: number): StreamError {
  const what = streamIndex < 0 ? 'not a btrfs send stream' : 'data after END is not a new stream header';
  return new StreamError('bad-magic', `${what}: expected magic "btrfs-stream\\0"`, ctx);
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}
