import { BtrfsTsError, StreamError, type ErrorContext } from '../errors.js';
import { escapePath } from '../dump/escape.js';
import * as C from './constants.js';
import { StreamParser, type ParseOptions } from './parser.js';
import { isUnknown } from './types.js';
import type * as T from './types.js';

type R<X> = void | Promise<void> | X;

/**
 * One callback per send command, like btrfs-progs' `struct btrfs_send_ops`. The dump printer and the image
 * receiver are two implementations. A callback may be async; the driver awaits it before reading on.
 */
export interface Receiver {
  /** A stream header was read (once per concatenated stream). */
  streamStart?(version: number, info: { offset: number; streamIndex: number }): R<void>;
  subvol(c: T.SubvolCmd): R<void>;
  snapshot(c: T.SnapshotCmd): R<void>;
  mkfile(c: T.CreateCmd): R<void>;
  mkdir(c: T.CreateCmd): R<void>;
  mknod(c: T.CreateCmd): R<void>;
  mkfifo(c: T.CreateCmd): R<void>;
  mksock(c: T.CreateCmd): R<void>;
  symlink(c: T.SymlinkCmd): R<void>;
  rename(c: T.RenameCmd): R<void>;
  link(c: T.LinkCmd): R<void>;
  unlink(c: T.UnlinkCmd): R<void>;
  rmdir(c: T.UnlinkCmd): R<void>;
  setXattr(c: T.SetXattrCmd): R<void>;
  removeXattr(c: T.RemoveXattrCmd): R<void>;
  write(c: T.WriteCmd): R<void>;
  clone(c: T.CloneCmd): R<void>;
  truncate(c: T.TruncateCmd): R<void>;
  chmod(c: T.ChmodCmd): R<void>;
  chown(c: T.ChownCmd): R<void>;
  utimes(c: T.UtimesCmd): R<void>;
  updateExtent(c: T.UpdateExtentCmd): R<void>;
  fallocate(c: T.FallocateCmd): R<void>;
  fileattr(c: T.FileattrCmd): R<void>;
  encodedWrite(c: T.EncodedWriteCmd): R<void>;
  enableVerity(c: T.EnableVerityCmd): R<void>;
  /** END of one stream. */
  end(c: T.EndCmd): R<void>;
  /** A command id this version does not know. Without this callback, the driver refuses the stream. */
  unknown?(c: T.UnknownCmd): R<void>;
}

type Method = Exclude<keyof Receiver, 'streamStart' | 'unknown'>;

const METHODS: Record<number, Method> = {
  [C.BTRFS_SEND_C_SUBVOL]: 'subvol', [C.BTRFS_SEND_C_SNAPSHOT]: 'snapshot', [C.BTRFS_SEND_C_MKFILE]: 'mkfile',
  [C.BTRFS_SEND_C_MKDIR]: 'mkdir', [C.BTRFS_SEND_C_MKNOD]: 'mknod', [C.BTRFS_SEND_C_MKFIFO]: 'mkfifo',
  [C.BTRFS_SEND_C_MKSOCK]: 'mksock', [C.BTRFS_SEND_C_SYMLINK]: 'symlink', [C.BTRFS_SEND_C_RENAME]: 'rename',
  [C.BTRFS_SEND_C_LINK]: 'link', [C.BTRFS_SEND_C_UNLINK]: 'unlink', [C.BTRFS_SEND_C_RMDIR]: 'rmdir',
  [C.BTRFS_SEND_C_SET_XATTR]: 'setXattr', [C.BTRFS_SEND_C_REMOVE_XATTR]: 'removeXattr', [C.BTRFS_SEND_C_WRITE]: 'write',
  [C.BTRFS_SEND_C_CLONE]: 'clone', [C.BTRFS_SEND_C_TRUNCATE]: 'truncate', [C.BTRFS_SEND_C_CHMOD]: 'chmod',
  [C.BTRFS_SEND_C_CHOWN]: 'chown', [C.BTRFS_SEND_C_UTIMES]: 'utimes', [C.BTRFS_SEND_C_END]: 'end',
  [C.BTRFS_SEND_C_UPDATE_EXTENT]: 'updateExtent', [C.BTRFS_SEND_C_FALLOCATE]: 'fallocate',
  [C.BTRFS_SEND_C_FILEATTR]: 'fileattr', [C.BTRFS_SEND_C_ENCODED_WRITE]: 'encodedWrite',
  [C.BTRFS_SEND_C_ENABLE_VERITY]: 'enableVerity',
};

export interface ProcessResult {
  streams: number;
  commands: number;
  /** Bytes of input consumed (offset just past the last command processed). */
  bytes: number;
}

/**
 * Drives a receiver over the stream: parse, dispatch, await. Errors thrown by a callback that are not
 * already btrfs-ts errors propagate unchanged (they are bugs); the parser's errors carry offsets.
 */
export interface ProcessOptions extends ParseOptions {
  /** Called after each command is applied (progress, output flushing); awaited when it returns a promise. */
  afterCommand?: (res: ProcessResult) => void | Promise<void>;
}

export async function processStream(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  receiver: Receiver,
  opts: ProcessOptions = {},
): Promise<ProcessResult> {
  const res: ProcessResult = { streams: 0, commands: 0, bytes: 0 };
  const parser = new StreamParser(input, opts);
  try {
    for (;;) {
      // pulled, not iterated: an item whose bytes are buffered costs no promise turn
      const x = parser.next();
      const item = x instanceof Promise ? await x : x;
      if (item === null) return res;
      if (item.kind === 'header') {
        res.streams++;
        res.bytes = item.offset + C.BTRFS_STREAM_HEADER_SIZE;
        const p = receiver.streamStart?.(item.version, { offset: item.offset, streamIndex: item.streamIndex });
        if (p instanceof Promise) await p;
        continue;
      }
      const c = item.command;
      try {
        const p = dispatch(receiver, c);
        if (p instanceof Promise) await p;
      } catch (e) {
        if (e instanceof BtrfsTsError) e.withContext(commandContext(c));
        throw e;
      }
      res.commands++;
      res.bytes = c.meta.offset + C.BTRFS_CMD_HEADER_SIZE + c.meta.len;
      if (opts.afterCommand) {
        const q = opts.afterCommand(res);
        if (q instanceof Promise) await q;
      }
    }
  } finally {
    await parser.close();
  }
}


/** Calls the receiver's callback for one command; unknown ids go to `unknown` or are refused. */
export function dispatch(receiver: Receiver, c: T.SendCommand & { meta: T.CommandMeta }): unknown {
  const name = METHODS[c.cmd];
  if (name === undefined || isUnknown(c)) {
    if (!receiver.unknown) {
      throw new StreamError('UNKNOWN_COMMAND', `unknown command id ${c.cmd} (${c.meta.len} bytes)`, {
        offset: c.meta.offset, commandIndex: c.meta.index, command: C.sendCommandName(c.cmd),
      });
    }
    return receiver.unknown(c as T.UnknownCmd);
  }
  return (receiver[name] as (x: T.SendCommand) => unknown).call(receiver, c);
}

/** Where a command sits in the stream, for error messages. */
export function commandContext(c: T.SendCommand): ErrorContext {
  const ctx: ErrorContext = { command: C.sendCommandName(c.cmd) };
  if (c.meta) {
    ctx.offset = c.meta.offset;
    ctx.commandIndex = c.meta.index;
  }
  const path = (c as { path?: Uint8Array }).path;
  if (path instanceof Uint8Array) ctx.path = escapePath(path);
  return ctx;
}
