import type { ErrorContext } from '../errors.js';
import { crc32cRaw } from '../util/crc32c.js';
import { CRC_SECTOR, crc32cRawBySector } from '../util/crc32c-combine.js';
import { AttrTable } from './attrs.js';
import * as C from './constants.js';
import type { EncodedWriteCmd, WriteCmd } from './types.js';

// The command CRC as the parser checks it: the header's part over a copy with its crc field zeroed, and for
// a WRITE or ENCODED_WRITE the DATA's part sector by sector, whose pieces a receive reuses as checksums.

/**
 * Sector CRCs left by the CRC check, beside the commands rather than in them (their shape is the API):
 * those of the last WRITE / ENCODED_WRITE parsed only, which is the one a receive asks about (a WeakMap
 * entry per command cost its GC more than the lookups). Asked about an older command, it answers
 * undefined and the checksums are computed from the data, as without the check.
 */
let sectorCrcsOf: object | undefined;
let sectorCrcs: Uint32Array | undefined;

/**
 * Raw CRC32C (seed 0, no inversion) of each whole 4096-byte piece of a WRITE's or ENCODED_WRITE's data,
 * from its start, as the parser's CRC check computed them (undefined without the check or under 4 KiB):
 * where the bytes land in an extent sector for sector, they give its checksums (crc32c-combine.ts).
 */
export function dataSectorCrcs(c: WriteCmd | EncodedWriteCmd): Uint32Array | undefined {
  return c === sectorCrcsOf ? sectorCrcs : undefined;
}

/** Called by the parser for the WRITE / ENCODED_WRITE it has just decoded, with its sectors' raw CRCs. */
export function keepSectorCrcs(command: object, sectors: Uint32Array): void {
  sectorCrcsOf = command;
  sectorCrcs = sectors;
}

/** The command header with its crc field zeroed, rebuilt for each command (not the input's bytes: they are the caller's). */
const ZEROED_HEADER = new Uint8Array(C.BTRFS_CMD_HEADER_SIZE);

export function zeroedHeader(h: Uint8Array): Uint8Array {
  for (let i = 0; i < 6; i++) ZEROED_HEADER[i] = h[i]!;
  return ZEROED_HEADER;
}

/**
 * The command CRC of a WRITE or ENCODED_WRITE, computed sector by sector over its DATA so that the raw CRC
 * of each whole 4 KiB piece comes out too: where a receive stores those bytes in an extent sector for
 * sector, the pieces' CRCs become the extent's checksums instead of a second pass (crc32c-combine.ts). Attributes that
 * do not parse are the parser's to report after the CRC check, as for any command: the CRC is then
 * computed in one piece and no attributes are returned.
 */
export function crcBySector(headerCrc: number, payload: Uint8Array, version: number, ctx: () => ErrorContext, payloadOffset: number, reuse?: AttrTable): { actual: number; attrs?: AttrTable; sectors?: Uint32Array } {
  let attrs: AttrTable;
  try {
    attrs = AttrTable.parse(payload, version, ctx, payloadOffset, reuse);
  } catch {
    return { actual: crc32cRaw(payload, headerCrc) };
  }
  const start = attrs.offsetOf(C.BTRFS_SEND_A_DATA);
  if (start < 0 || attrs.lengthOf(C.BTRFS_SEND_A_DATA) < CRC_SECTOR) return { actual: crc32cRaw(payload, headerCrc), attrs };
  const end = start + attrs.lengthOf(C.BTRFS_SEND_A_DATA);
  const data = payload.subarray(start, end);
  const sectors = new Uint32Array(Math.floor(data.length / CRC_SECTOR));
  let c = crc32cRaw(payload.subarray(0, start), headerCrc);
  c = crc32cRawBySector(c, data, sectors);
  // (protocol 2's DATA takes the rest of the command: nothing after it)
  return { actual: end === payload.length ? c : crc32cRaw(payload.subarray(end), c), attrs, sectors };
}
