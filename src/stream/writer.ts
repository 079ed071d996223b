import { StreamError } from '../errors.js';
import { crc32cRaw } from '../util/crc32c.js';
import * as C from './constants.js';
import { commandAttrs } from './decode.js';
import { isUnknown, type SendCommand, type StreamItem, type Timespec } from './types.js';

const MAGIC = new TextEncoder().encode(C.BTRFS_SEND_STREAM_MAGIC + '\0');

export function encodeStreamHeader(version: number): Uint8Array {
  const out = new Uint8Array(C.BTRFS_STREAM_HEADER_SIZE);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(13, version, true);
  return out;
}

/**
 * Serializes one command with header and CRC. Attributes come from the typed fields, in the order the parser
 * saw them (`meta.attrOrder`) or else in the kernel's order, so parse → encode reproduces kernel bytes.
 */
export function encodeCommand(c: SendCommand, version: number): Uint8Array {
  let payload: Uint8Array;
  if (isUnknown(c)) {
    payload = c.payload;
  } else {
    const order = c.meta?.attrOrder.length ? c.meta.attrOrder : commandAttrs(c.cmd);
    const parts: { type: number; value: Uint8Array }[] = [];
    for (const type of order) {
      const v = attrValue(c, type);
      if (v !== undefined) parts.push({ type, value: v });
    }
    let size = 0;
    for (const p of parts) size += p.value.length + (isImplicitLen(p.type, version) ? 2 : 4);
    payload = new Uint8Array(size);
    let pos = 0;
    for (const p of parts) {
      payload[pos++] = p.type & 0xff;
      payload[pos++] = p.type >> 8;
      if (!isImplicitLen(p.type, version)) {
        if (p.value.length > 0xffff) {
          throw new StreamError('ATTR_TOO_LONG', `attribute ${C.sendAttrName(p.type)} of ${p.value.length} bytes does not fit a v${version} TLV`, { command: C.sendCommandName(c.cmd) });
        }
        payload[pos++] = p.value.length & 0xff;
        payload[pos++] = p.value.length >> 8;
      }
      payload.set(p.value, pos);
      pos += p.value.length;
    }
  }
  const out = new Uint8Array(C.BTRFS_CMD_HEADER_SIZE + payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, payload.length, true);
  dv.setUint16(4, c.cmd, true);
  out.set(payload, C.BTRFS_CMD_HEADER_SIZE);
  dv.setUint32(6, crc32cRaw(out), true);
  return out;
}

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

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
  return b;
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

function ts(t: Timespec): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, BigInt.asUintN(64, t.sec), true);
  dv.setUint32(8, t.nsec >>> 0, true);
  return b;
}

/** The wire value of one attribute of a typed command, or undefined when the command lacks it. */
function attrValue(c: Exclude<SendCommand, { unknown: true }>, type: number): Uint8Array | undefined {
  const extra = c.meta?.extraAttrs?.find((a) => a.type === type);
  if (extra) return extra.value;
  const f = c as unknown as Record<string, unknown>;
  const big = (k: string) => (typeof f[k] === 'bigint' ? u64(f[k] as bigint) : undefined);
  const bytes = (k: string) => (f[k] instanceof Uint8Array ? (f[k] as Uint8Array) : undefined);
  const time = (k: string) => (f[k] !== undefined ? ts(f[k] as Timespec) : undefined);
  const num32 = (k: string) => (typeof f[k] === 'number' ? u32(f[k] as number) : undefined);
  switch (type) {
    case C.BTRFS_SEND_A_UUID: return bytes('uuid');
    case C.BTRFS_SEND_A_CTRANSID: return big('ctransid');
    case C.BTRFS_SEND_A_INO: return big('ino');
    case C.BTRFS_SEND_A_SIZE: return big('size');
    case C.BTRFS_SEND_A_MODE: return big('mode');
    case C.BTRFS_SEND_A_UID: return big('uid');
    case C.BTRFS_SEND_A_GID: return big('gid');
    case C.BTRFS_SEND_A_RDEV: return big('rdev');
    case C.BTRFS_SEND_A_CTIME: return time('ctime');
    case C.BTRFS_SEND_A_MTIME: return time('mtime');
    case C.BTRFS_SEND_A_ATIME: return time('atime');
    case C.BTRFS_SEND_A_OTIME: return time('otime');
    case C.BTRFS_SEND_A_XATTR_NAME: return bytes('name');
    case C.BTRFS_SEND_A_XATTR_DATA: return bytes('data');
    case C.BTRFS_SEND_A_PATH: return bytes('path');
    case C.BTRFS_SEND_A_PATH_TO: return bytes('pathTo');
    case C.BTRFS_SEND_A_PATH_LINK: return bytes('pathLink');
    case C.BTRFS_SEND_A_FILE_OFFSET: return big('fileOffset');
    case C.BTRFS_SEND_A_DATA: return bytes('data');
    case C.BTRFS_SEND_A_CLONE_UUID: return bytes('cloneUuid');
    case C.BTRFS_SEND_A_CLONE_CTRANSID: return big('cloneCtransid');
    case C.BTRFS_SEND_A_CLONE_PATH: return bytes('clonePath');
    case C.BTRFS_SEND_A_CLONE_OFFSET: return big('cloneOffset');
    case C.BTRFS_SEND_A_CLONE_LEN: return big('cloneLen');
    case C.BTRFS_SEND_A_FALLOCATE_MODE: return num32('mode');
    case C.BTRFS_SEND_A_FILEATTR: return big('fileattr');
    case C.BTRFS_SEND_A_UNENCODED_FILE_LEN: return big('unencodedFileLen');
    case C.BTRFS_SEND_A_UNENCODED_LEN: return big('unencodedLen');
    case C.BTRFS_SEND_A_UNENCODED_OFFSET: return big('unencodedOffset');
    case C.BTRFS_SEND_A_COMPRESSION: return num32('compression');
    case C.BTRFS_SEND_A_ENCRYPTION: return num32('encryption');
    case C.BTRFS_SEND_A_VERITY_ALGORITHM: return typeof f.algorithm === 'number' ? Uint8Array.of(f.algorithm) : undefined;
    case C.BTRFS_SEND_A_VERITY_BLOCK_SIZE: return num32('blockSize');
    case C.BTRFS_SEND_A_VERITY_SALT_DATA: return bytes('salt');
    case C.BTRFS_SEND_A_VERITY_SIG_DATA: return bytes('sig');
    default: return undefined;
  }
}
