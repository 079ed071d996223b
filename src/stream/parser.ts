import { StreamError, type ErrorContext } from '../errors.js';
import type { CrcAhead } from '../io/crc-ahead.js';
import { crc32cRaw } from '../util/crc32c.js';
import { CRC_SECTOR } from '../util/crc32c-combine.js';
import { AttrTable } from './attrs.js';
import { crcBySector, keepSectorCrcs, zeroedHeader } from './command-crc.js';
import * as C from './constants.js';
import { decodeCommand, isKnownCommand } from './decode.js';
import { ChunkReader, isWindowSource, type ByteReader } from './source.js';
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
  /**
   * With reuseInput: the consumer keeps no attribute view at all past asking for the next item (it turns
   * each command into text at once, as dump does), so not even the small attributes are copied.
   */
  transientAttrs?: boolean;
  /** Keep the raw CRC of each 4 KiB piece of WRITE / ENCODED_WRITE data (dataSectorCrcs), for receive. */
  sectorCrcs?: boolean;
}

/**
 * What StreamParser.nextRaw() answers for a command: it is length-capped, CRC-checked and split into
 * attributes (rawCmd, rawPayload, rawAttrs), not yet decoded.
 */
export const RAW_COMMAND = { kind: 'raw' } as const;
export type RawItem = StreamItem | typeof RAW_COMMAND;

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
  const p = new StreamParser(input, opts);
  try {
    for (;;) {
      const x = p.next();
      const item = x instanceof Promise ? await x : x;
      if (item === null) return;
      yield item;
    }
  } finally {
    await p.close();
  }
}

type Phase = 'header' | 'command' | 'payload' | 'done';

/**
 * parseStream's engine, pull-style: next() returns the item itself when its bytes are already buffered
 * (most commands: the input is read in large pieces) and a promise only when it must wait for input. The
 * stream drivers (processStream) call it directly; an async generator costs a few promise turns per item,
 * which on streams of small commands was a tenth of a dump's time.
 */
export class StreamParser {
  private readonly r: ByteReader;
  private readonly reuse: boolean;
  private readonly maxLen: number;
  private phase: Phase = 'header';
  private eof = false;
  private index = 0;
  private streamIndex = -1;
  private version = 0;
  /**
   * The command whose 10-byte header is read and whose payload is awaited. Fields rather than an object,
   * and its error context built only for an error: a dump's per-command allocation is what its GC costs.
   */
  private cmdOffset = 0;
  private cmdLen = 0;
  private cmd = 0;
  private cmdCrc = 0;
  /** Raw CRC32C of the header with its crc field zeroed: where the payload's CRC starts. */
  private headerCrc = 0;
  /**
   * The commands' CRCs checked ahead on another thread (io/crc-ahead.ts), counting from the first
   * command; `aheadSeen` counts the parser's commands from the same one, and `preChecked` says the
   * current command is one the thread found intact.
   */
  private ahead: CrcAhead | undefined;
  private aheadSeen = 0;
  private preChecked = false;
  /** The current command's error context, for the attribute table (one function for every command). */
  private readonly ctxOf = (): ErrorContext => ({ offset: this.cmdOffset, commandIndex: this.index, command: C.sendCommandName(this.cmd) });
  /**
   * The last command's attribute table, filled anew for the next: nothing keeps a table past decoding
   * its command (the command holds copies or views of the values, and the order array, never the table).
   */
  private spentAttrs: AttrTable | undefined;
  /** nextRaw() mode: commands are handed out undecoded (RAW_COMMAND); their payload is kept here. */
  private raw = false;
  private payload: Uint8Array | undefined;
  /** The RAW_COMMAND handed out is not counted yet: its index is still the one its errors carry. */
  private rawPending = false;

  constructor(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, private readonly opts: ParseOptions = {}) {
    this.maxLen = opts.maxCommandLen ?? C.DEFAULT_MAX_COMMAND_LEN;
    this.r = opts.reuseInput && isWindowSource(input) ? input.openWindow() : new ChunkReader(input, { reuse: opts.reuseInput ?? false });
    this.reuse = this.r.reusing;
  }

  /** The next item, or null after the last; views of the previous item are given up. */
  next(): StreamItem | null | Promise<StreamItem | null> {
    // the consumer has asked for the next item: the previous one's bytes are free
    this.r.releaseSpent();
    return this.step() as StreamItem | null | Promise<StreamItem | null>;
  }

  /**
   * As next(), but a command comes as RAW_COMMAND: verified and split into attributes, left to the caller
   * to read from rawCmd / rawPayload / rawAttrs or to decode with decodeRaw() before asking again. A
   * consumer that formats most commands straight from their bytes (dump) builds no command objects.
   */
  nextRaw(): RawItem | null | Promise<RawItem | null> {
    this.raw = true;
    if (this.rawPending) {
      this.rawPending = false;
      this.index++;
    }
    this.r.releaseSpent();
    return this.step();
  }

  get rawCmd(): number {
    return this.cmd;
  }

  get rawPayload(): Uint8Array {
    return this.payload!;
  }

  get rawAttrs(): AttrTable {
    return this.spentAttrs!;
  }

  /** Offset of the byte just past the RAW_COMMAND. */
  get rawEnd(): number {
    return this.cmdOffset + C.BTRFS_CMD_HEADER_SIZE + this.cmdLen;
  }

  /** The RAW_COMMAND decoded, as next() would have returned it, or its decoding error. */
  decodeRaw(): StreamItem & { kind: 'command' } {
    return this.decode(this.cmdOffset, this.cmdLen, this.cmd, this.payload!, this.spentAttrs!);
  }

  /** Stops reading (closes files or streams early). */
  async close(): Promise<void> {
    this.phase = 'done';
    await this.r.close();
  }

  private step(): RawItem | null | Promise<RawItem | null> {
    for (;;) {
      switch (this.phase) {
        case 'done':
          return null;
        case 'header':
          if (this.r.available < C.BTRFS_STREAM_HEADER_SIZE && !this.eof) return this.wait(C.BTRFS_STREAM_HEADER_SIZE);
          return this.header();
        case 'command':
          if (this.r.available < C.BTRFS_CMD_HEADER_SIZE && !this.eof) return this.wait(C.BTRFS_CMD_HEADER_SIZE);
          this.commandHeader();
          break;
        case 'payload': {
          const len = this.cmdLen;
          if (this.r.available < len && !this.eof) return this.wait(len);
          return this.command();
        }
      }
    }
  }

  private async wait(n: number): Promise<RawItem | null> {
    if ((await this.r.fill(n)) < n) this.eof = true;
    return this.step();
  }

  /** Between streams: EOF is the normal end, anything else must be a new header. */
  private header(): StreamItem | null {
    const r = this.r;
    const hdrOffset = r.position;
    const got = Math.min(r.available, C.BTRFS_STREAM_HEADER_SIZE);
    if (got === 0) {
      if (this.streamIndex < 0) throw new StreamError('EMPTY_INPUT', 'input is empty: no send stream header', { offset: 0 });
      this.phase = 'done';
      return null;
    }
    const headerCtx: ErrorContext = { offset: hdrOffset, commandIndex: this.index, command: 'stream header' };
    if (got < C.BTRFS_STREAM_HEADER_SIZE) {
      const head = r.take(got);
      if (!startsWithMagicPrefix(head)) throw badMagic(headerCtx, this.streamIndex);
      throw new StreamError('TRUNCATED_HEADER', `stream header truncated: ${got} of ${C.BTRFS_STREAM_HEADER_SIZE} bytes`, headerCtx);
    }
    const hdr = r.take(C.BTRFS_STREAM_HEADER_SIZE);
    if (!startsWithMagicPrefix(hdr)) throw badMagic(headerCtx, this.streamIndex);
    const version = (hdr[13]! | (hdr[14]! << 8) | (hdr[15]! << 16) | (hdr[16]! << 24)) >>> 0;
    if (version < C.BTRFS_SEND_STREAM_VERSION_MIN || version > C.BTRFS_SEND_STREAM_VERSION_MAX) {
      throw new StreamError('UNSUPPORTED_VERSION', `unsupported send stream version ${version} (supported: 1, 2, 3)`, headerCtx);
    }
    this.streamIndex++;
    this.version = version;
    this.phase = 'command';
    // the thread frames the streams after this one itself; a receive's check makes the data's sector CRCs
    if (this.streamIndex === 0 && !this.opts.noCrc && !this.opts.sectorCrcs) this.ahead = r.crcAhead?.(this.maxLen);
    return { kind: 'header', version, offset: hdrOffset, streamIndex: this.streamIndex };
  }

  private commandHeader(): void {
    const r = this.r;
    const offset = r.position;
    const have = Math.min(r.available, C.BTRFS_CMD_HEADER_SIZE);
    if (have === 0) throw new StreamError('MISSING_END', 'stream ends without an END command', { offset, commandIndex: this.index, command: 'command header' });
    if (have < C.BTRFS_CMD_HEADER_SIZE) {
      throw new StreamError('TRUNCATED_COMMAND', `command header truncated: ${have} of ${C.BTRFS_CMD_HEADER_SIZE} bytes`, { offset, commandIndex: this.index, command: 'command header' });
    }
    const h = r.take(C.BTRFS_CMD_HEADER_SIZE);
    const len = (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0;
    const cmd = h[4]! | (h[5]! << 8);
    const crc = (h[6]! | (h[7]! << 8) | (h[8]! << 16) | (h[9]! << 24)) >>> 0;
    this.cmdOffset = offset;
    this.cmdLen = len;
    this.cmd = cmd;
    this.cmdCrc = crc;
    if (len > this.maxLen) {
      throw new StreamError('COMMAND_TOO_LONG', `command length ${len} exceeds the limit of ${this.maxLen} bytes`, this.ctxOf());
    }
    this.preChecked = this.ahead !== undefined && this.aheadSeen++ < this.ahead.verified();
    // the header's part of the CRC now: its view is not used after the payload is read
    this.headerCrc = this.opts.noCrc || this.preChecked ? 0 : crc32cRaw(zeroedHeader(h), 0);
    // nothing keeps `h`, and the previous command's views went at next(): unpinned, the reader can make
    // room for the payload by moving bytes within its buffer instead of into a new one per command
    r.releaseSpent();
    this.phase = 'payload';
  }

  private command(): RawItem {
    const r = this.r;
    const { cmdOffset: offset, cmdLen: len, cmd, cmdCrc: crc, headerCrc, ctxOf } = this;
    const avail = Math.min(r.available, len);
    if (avail < len) {
      throw new StreamError('TRUNCATED_COMMAND', `command truncated: ${avail} of ${len} payload bytes`, ctxOf());
    }
    const payload = r.take(len);
    const payloadOffset = offset + C.BTRFS_CMD_HEADER_SIZE;
    const version = this.version;
    let attrs: AttrTable | undefined;
    let sectors: Uint32Array | undefined;
    if (!this.opts.noCrc && !this.preChecked) {
      let actual: number;
      if (this.opts.sectorCrcs && (cmd === C.BTRFS_SEND_C_WRITE || cmd === C.BTRFS_SEND_C_ENCODED_WRITE) && len >= CRC_SECTOR) {
        ({ actual, attrs, sectors } = crcBySector(headerCrc, payload, version, ctxOf, payloadOffset, this.spentAttrs));
      } else {
        actual = crc32cRaw(payload, headerCrc);
      }
      if (actual !== crc) {
        throw new StreamError('CRC_MISMATCH', `CRC32C mismatch: header says 0x${hex8(crc)}, data gives 0x${hex8(actual)}`, ctxOf());
      }
    }
    attrs ??= AttrTable.parse(payload, version, ctxOf, payloadOffset, this.spentAttrs);
    this.spentAttrs = attrs;
    if (this.raw) {
      this.payload = payload;
      this.rawPending = true;
      this.phase = this.afterCommand(cmd);
      return RAW_COMMAND;
    }
    const item = this.decode(offset, len, cmd, payload, attrs);
    if (sectors !== undefined) keepSectorCrcs(item.command, sectors);
    this.index++;
    this.phase = this.afterCommand(cmd);
    return item;
  }

  private afterCommand(cmd: number): Phase {
    if (cmd === C.BTRFS_SEND_C_END) return this.opts.stopAfterFirstEnd ? 'done' : 'header';
    return 'command';
  }

  private decode(offset: number, len: number, cmd: number, payload: Uint8Array, attrs: AttrTable): StreamItem & { kind: 'command' } {
    if (this.reuse && !this.opts.transientAttrs) attrs.detach(C.BTRFS_SEND_A_DATA);
    const meta: CommandMeta = { offset, index: this.index, streamIndex: this.streamIndex, version: this.version, len, attrOrder: attrs.order };
    // an unknown command keeps its raw payload
    const command = decodeCommand(cmd, this.reuse && !isKnownCommand(cmd) ? new Uint8Array(payload) : payload, attrs, meta);
    return { kind: 'command', command };
  }
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
