import { placeInto } from '../util/bytes.js';
import { crc32cRaw } from '../util/crc32c.js';
import { CRC_SECTOR, crc32cShiftSectors } from '../util/crc32c-combine.js';
import * as C from './constants.js';
import { isUnknown, type KnownCommand, type SendCommand, type Timespec } from './types.js';

/**
 * The commands a send makes most, encoded from their fields directly: WRITE, UTIMES, RENAME, UNLINK, MKFILE
 * and the rest of an incremental send's names and attributes (bench/send.sh's: ~1,540 commands). The table
 * walk of encodeCommandInto (writer.ts) serves any command — parsed ones too, with their attribute order
 * and unknown attributes — and looks each attribute's field up by name three times (size, length, value)
 * on command objects of a dozen shapes: megamorphic loads, in code that runs cold in a short send.
 * Only for a command without parser meta (its attributes in the kernel's order, no extra ones): the bytes
 * are encodeCommandInto's (test/stream-writer-sent.test.ts compares them).
 */

const H = C.BTRFS_CMD_HEADER_SIZE;
/** An attribute's type and length, before its value. */
const TLV = 4;
const U64 = TLV + 8;
const TIME = TLV + 12;
const MAX_TLV = 0xffff;

/** A TLV of bytes that fits (else -1: encodeCommandInto, which refuses it by name). */
const bytesLen = (b: Uint8Array): number => (b.length > MAX_TLV ? -1 : TLV + b.length);

/** Bytes of `c` on the wire, header included; -1 where encodeSentInto does not encode it. */
export function sentSize(c: SendCommand, version: number): number {
  if (c.meta !== undefined || isUnknown(c) || !('path' in c) || c.path.length > MAX_TLV) return -1;
  const k = c as KnownCommand;
  const n = H + TLV + c.path.length;
  let a: number;
  let b: number;
  switch (k.cmd) {
    case C.BTRFS_SEND_C_WRITE:
      if (version >= 2) return n + U64 + 2 + k.data.length;
      return k.data.length > MAX_TLV ? -1 : n + U64 + TLV + k.data.length;
    case C.BTRFS_SEND_C_UPDATE_EXTENT: case C.BTRFS_SEND_C_CHOWN: return n + 2 * U64;
    case C.BTRFS_SEND_C_TRUNCATE: case C.BTRFS_SEND_C_CHMOD: return n + U64;
    case C.BTRFS_SEND_C_UTIMES: return n + (k.otime !== undefined ? 4 : 3) * TIME;
    case C.BTRFS_SEND_C_UNLINK: case C.BTRFS_SEND_C_RMDIR: return n;
    case C.BTRFS_SEND_C_MKFILE: case C.BTRFS_SEND_C_MKDIR: return k.mode === undefined && k.rdev === undefined ? n + U64 : -1;
    case C.BTRFS_SEND_C_RENAME: a = bytesLen(k.pathTo); return a < 0 ? -1 : n + a;
    case C.BTRFS_SEND_C_LINK: a = bytesLen(k.pathLink); return a < 0 ? -1 : n + a;
    case C.BTRFS_SEND_C_REMOVE_XATTR: a = bytesLen(k.name); return a < 0 ? -1 : n + a;
    case C.BTRFS_SEND_C_SET_XATTR:
      a = bytesLen(k.name);
      b = bytesLen(k.data);
      return a < 0 || b < 0 ? -1 : n + a + b;
    default: return -1;
  }
}

function putBytes(out: Uint8Array, dv: DataView, pos: number, type: number, v: Uint8Array): number {
  dv.setUint16(pos, type, true);
  dv.setUint16(pos + 2, v.length, true);
  out.set(v, pos + TLV);
  return pos + TLV + v.length;
}

function putU64(dv: DataView, pos: number, type: number, v: bigint): number {
  dv.setUint16(pos, type, true);
  dv.setUint16(pos + 2, 8, true);
  dv.setBigUint64(pos + TLV, BigInt.asUintN(64, v), true);
  return pos + U64;
}

function putTime(dv: DataView, pos: number, type: number, v: Timespec): number {
  dv.setUint16(pos, type, true);
  dv.setUint16(pos + 2, 12, true);
  dv.setBigUint64(pos + TLV, BigInt.asUintN(64, v.sec), true);
  dv.setUint32(pos + TLV + 8, v.nsec >>> 0, true);
  return pos + TIME;
}

/**
 * Writes `c` (sentSize(c, version) >= 0, that many bytes of room at out[pos..]; `dv` a view of all of
 * `out`'s buffer from out's start) with its CRC; returns the end.
 */
export function encodeSentInto(c: KnownCommand, version: number, out: Uint8Array, dv: DataView, pos: number): number {
  const start = pos;
  pos = putBytes(out, dv, pos + H, C.BTRFS_SEND_A_PATH, (c as { path: Uint8Array }).path);
  let dataAt = -1;
  let dataLen = 0;
  let dataCrc: number | undefined;
  switch (c.cmd) {
    case C.BTRFS_SEND_C_WRITE:
      pos = putU64(dv, pos, C.BTRFS_SEND_A_FILE_OFFSET, c.fileOffset);
      dv.setUint16(pos, C.BTRFS_SEND_A_DATA, true);
      pos += 2;
      if (version < 2) {
        dv.setUint16(pos, c.data.length, true);
        pos += 2;
      }
      // already there when it was read into the output (StreamEncoder.dataRoom)
      placeInto(out, c.data, pos);
      dataAt = pos;
      dataLen = c.data.length;
      dataCrc = c.dataCrc;
      pos += dataLen;
      break;
    case C.BTRFS_SEND_C_UPDATE_EXTENT:
      pos = putU64(dv, pos, C.BTRFS_SEND_A_FILE_OFFSET, c.fileOffset);
      pos = putU64(dv, pos, C.BTRFS_SEND_A_SIZE, c.size);
      break;
    case C.BTRFS_SEND_C_TRUNCATE: pos = putU64(dv, pos, C.BTRFS_SEND_A_SIZE, c.size); break;
    case C.BTRFS_SEND_C_CHMOD: pos = putU64(dv, pos, C.BTRFS_SEND_A_MODE, c.mode); break;
    case C.BTRFS_SEND_C_CHOWN:
      pos = putU64(dv, pos, C.BTRFS_SEND_A_UID, c.uid);
      pos = putU64(dv, pos, C.BTRFS_SEND_A_GID, c.gid);
      break;
    case C.BTRFS_SEND_C_UTIMES:
      pos = putTime(dv, pos, C.BTRFS_SEND_A_ATIME, c.atime);
      pos = putTime(dv, pos, C.BTRFS_SEND_A_MTIME, c.mtime);
      pos = putTime(dv, pos, C.BTRFS_SEND_A_CTIME, c.ctime);
      if (c.otime !== undefined) pos = putTime(dv, pos, C.BTRFS_SEND_A_OTIME, c.otime);
      break;
    case C.BTRFS_SEND_C_MKFILE: case C.BTRFS_SEND_C_MKDIR: pos = putU64(dv, pos, C.BTRFS_SEND_A_INO, c.ino); break;
    case C.BTRFS_SEND_C_RENAME: pos = putBytes(out, dv, pos, C.BTRFS_SEND_A_PATH_TO, c.pathTo); break;
    case C.BTRFS_SEND_C_LINK: pos = putBytes(out, dv, pos, C.BTRFS_SEND_A_PATH_LINK, c.pathLink); break;
    case C.BTRFS_SEND_C_SET_XATTR:
      pos = putBytes(out, dv, pos, C.BTRFS_SEND_A_XATTR_NAME, c.name);
      pos = putBytes(out, dv, pos, C.BTRFS_SEND_A_XATTR_DATA, c.data);
      break;
    case C.BTRFS_SEND_C_REMOVE_XATTR: pos = putBytes(out, dv, pos, C.BTRFS_SEND_A_XATTR_NAME, c.name); break;
    default: // UNLINK, RMDIR: the path alone
  }
  return sealCommand(out, dv, start, pos, c.cmd, dataAt, dataLen, dataCrc);
}

/**
 * The header of the command whose payload is out[start + 10, pos) — its length, `cmd`, its CRC — for both
 * encoders (this one and writer.ts's encodeCommandInto); returns `pos`. Where the DATA at [dataAt, dataAt +
 * dataLen) brings `dataCrc`, the raw CRC of its whole sectors (a send's data read and checked), the command
 * CRC is combined around it instead of passing over the data again: crcUpdate(c, D) = shift(c, |D|) ^
 * rawcrc(D) (crc32c-combine.ts).
 */
export function sealCommand(out: Uint8Array, dv: DataView, start: number, pos: number, cmd: number, dataAt: number, dataLen: number, dataCrc: number | undefined): number {
  dv.setUint32(start, pos - start - H, true);
  dv.setUint16(start + 4, cmd, true);
  dv.setUint32(start + 6, 0, true);
  let crc: number;
  if (dataCrc !== undefined && dataAt >= 0 && dataLen % CRC_SECTOR === 0) {
    crc = crc32cRaw(out.subarray(start, dataAt));
    crc = (crc32cShiftSectors(crc, dataLen / CRC_SECTOR) ^ dataCrc) >>> 0;
    crc = crc32cRaw(out.subarray(dataAt + dataLen, pos), crc);
  } else {
    crc = crc32cRaw(out.subarray(start, pos));
  }
  dv.setUint32(start + 6, crc, true);
  return pos;
}
