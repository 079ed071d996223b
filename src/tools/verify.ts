import { BTRFS_MAX_UNCOMPRESSED, checkEncodedExtent, initCodecs } from '../compress/index.js';
import { BtrfsTsError } from '../errors.js';
import * as C from '../stream/constants.js';
import { parseStream, type ParseOptions } from '../stream/parser.js';
import { isUnknown, type SendCommand } from '../stream/types.js';
import { checkStreamPath, checkSubvolName, formatUuid, showPath } from './paths.js';

/**
 * `verify`: everything that can be checked about a stored stream without receiving it. Framing, CRCs and
 * attribute layout come from the parser (a violation there ends the walk: nothing after it can be
 * trusted); the rest is checked per command and collected, so one run lists every problem.
 */

export interface VerifyOptions extends ParseOptions {
  /** Stop collecting after this many problems (default 1000); the walk still finishes for the summary. */
  maxProblems?: number;
}

export interface VerifyProblem {
  /** Stable identifier: `stream` (parser), `unknown-command`, `no-subvol`, `unsafe-path`, `encoded`, ... */
  kind: string;
  message: string;
  offset?: number;
  commandIndex?: number;
  command?: string;
  path?: string;
}

export interface DataBytes {
  /** WRITE payload bytes. */
  write: number;
  /** ENCODED_WRITE payload bytes as stored in the stream. */
  encoded: number;
  /** File bytes those ENCODED_WRITEs produce (unencoded_file_len). */
  encodedFile: number;
  /** Bytes cloned (CLONE clone_len). */
  clone: number;
}

export interface SubvolSummary {
  streamIndex: number;
  version: number;
  kind: 'subvol' | 'snapshot';
  /** The SUBVOL/SNAPSHOT path, latin1 (one char per byte). */
  name: string;
  uuid: string;
  ctransid: string;
  /** clone_uuid of SNAPSHOT: the parent the incremental applies to. */
  parentUuid: string | null;
  parentCtransid: string | null;
  /** Command counts by kernel name without prefix (`WRITE`, `ENCODED_WRITE`, ...). */
  commands: Record<string, number>;
  data: DataBytes;
  /** ENCODED_WRITE counts per codec (`zlib`, `zstd`, `lzo-4k`, `none`). */
  codecs: Record<string, number>;
  /** Whether the subvolume was closed by an END (with `send -e` only the last one is). */
  ended: boolean;
}

export interface VerifyReport {
  ok: boolean;
  streams: number;
  commands: number;
  bytes: number;
  subvolumes: SubvolSummary[];
  problems: VerifyProblem[];
  /** Problems beyond maxProblems that were counted but not kept. */
  droppedProblems: number;
}

const VERSION_MAX_CMD: Record<number, number> = { 1: C.BTRFS_SEND_C_UPDATE_EXTENT, 2: C.BTRFS_SEND_C_ENCODED_WRITE, 3: C.BTRFS_SEND_C_ENABLE_VERITY };

export function codecLabel(code: number | undefined): string {
  switch (code ?? 0) {
    case 0: return 'none';
    case 1: return 'zlib';
    case 2: return 'zstd';
    case 3: case 4: case 5: case 6: case 7: return `lzo-${4 << ((code ?? 3) - 3)}k`;
    default: return `unknown(${code})`;
  }
}

const shortName = (cmd: number): string => C.sendCommandName(cmd).replace('BTRFS_SEND_C_', '');
const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');

/** The stream paths of a command that name entries inside a subvolume (not symlink targets). */
function commandPaths(c: SendCommand): { attr: string; path: Uint8Array; allowRoot: boolean }[] {
  if (isUnknown(c) || c.cmd === C.BTRFS_SEND_C_END || c.cmd === C.BTRFS_SEND_C_SUBVOL || c.cmd === C.BTRFS_SEND_C_SNAPSHOT) return [];
  const out: { attr: string; path: Uint8Array; allowRoot: boolean }[] = [];
  // the root directory is addressed by the empty path for attribute changes, never for namespace changes
  const rootOk = c.cmd === C.BTRFS_SEND_C_CHMOD || c.cmd === C.BTRFS_SEND_C_CHOWN || c.cmd === C.BTRFS_SEND_C_UTIMES ||
    c.cmd === C.BTRFS_SEND_C_SET_XATTR || c.cmd === C.BTRFS_SEND_C_REMOVE_XATTR || c.cmd === C.BTRFS_SEND_C_FILEATTR;
  if ('path' in c) out.push({ attr: 'path', path: c.path, allowRoot: rootOk });
  if (c.cmd === C.BTRFS_SEND_C_RENAME) out.push({ attr: 'path_to', path: c.pathTo, allowRoot: false });
  if (c.cmd === C.BTRFS_SEND_C_LINK) out.push({ attr: 'path_link', path: c.pathLink, allowRoot: false });
  if (c.cmd === C.BTRFS_SEND_C_CLONE) out.push({ attr: 'clone_path', path: c.clonePath, allowRoot: false });
  return out;
}

class Collector {
  readonly problems: VerifyProblem[] = [];
  dropped = 0;
  constructor(private readonly max: number) {}
  add(p: VerifyProblem): void {
    if (this.problems.length < this.max) this.problems.push(p);
    else this.dropped++;
  }
}

/** Checks one stream input (possibly several concatenated streams). Never throws for bad stream bytes. */
export async function verifyStream(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: VerifyOptions = {}): Promise<VerifyReport> {
  await initCodecs();
  const col = new Collector(opts.maxProblems ?? 1000);
  const report: VerifyReport = { ok: false, streams: 0, commands: 0, bytes: 0, subvolumes: [], problems: col.problems, droppedProblems: 0 };
  let cur: SubvolSummary | undefined;
  let version = 0;
  try {
    for await (const item of parseStream(input, opts)) {
      if (item.kind === 'header') {
        report.streams++;
        version = item.version;
        report.bytes = item.offset + C.BTRFS_STREAM_HEADER_SIZE;
        cur = undefined;
        continue;
      }
      const c = item.command;
      report.commands++;
      report.bytes = c.meta.offset + C.BTRFS_CMD_HEADER_SIZE + c.meta.len;
      const where = { offset: c.meta.offset, commandIndex: c.meta.index, command: C.sendCommandName(c.cmd) };
      const problem = (kind: string, message: string, path?: Uint8Array) =>
        col.add({ kind, message, ...where, ...(path !== undefined ? { path: latin1(path) } : {}) });

      if (isUnknown(c)) {
        problem('unknown-command', `unknown command id ${c.cmd} (${c.meta.len} bytes)`);
        continue;
      }
      if (c.cmd > (VERSION_MAX_CMD[version] ?? C.BTRFS_SEND_C_MAX)) {
        problem('version', `${shortName(c.cmd)} is not part of protocol version ${version}`);
      }
      if (c.cmd === C.BTRFS_SEND_C_SUBVOL || c.cmd === C.BTRFS_SEND_C_SNAPSHOT) {
        const bad = checkSubvolName(c.path);
        if (bad) problem('unsafe-path', `subvolume name ${showPath(c.path)}: ${bad.message}`, c.path);
        const snap = c.cmd === C.BTRFS_SEND_C_SNAPSHOT;
        cur = {
          streamIndex: c.meta.streamIndex, version, kind: snap ? 'snapshot' : 'subvol', name: latin1(c.path),
          uuid: formatUuid(c.uuid), ctransid: c.ctransid.toString(),
          parentUuid: snap ? formatUuid(c.cloneUuid) : null, parentCtransid: snap ? c.cloneCtransid.toString() : null,
          commands: {}, data: { write: 0, encoded: 0, encodedFile: 0, clone: 0 }, codecs: {}, ended: false,
        };
        report.subvolumes.push(cur);
      } else if (!cur && c.cmd !== C.BTRFS_SEND_C_END) {
        problem('no-subvol', `${shortName(c.cmd)} before any SUBVOL/SNAPSHOT`);
      }
      if (cur) cur.commands[shortName(c.cmd)] = (cur.commands[shortName(c.cmd)] ?? 0) + 1;

      for (const p of commandPaths(c)) {
        const bad = checkStreamPath(p.path, { allowRoot: p.allowRoot });
        if (bad) problem('unsafe-path', `${p.attr} ${showPath(p.path)}: ${bad.message}`, p.path);
      }

      switch (c.cmd) {
        case C.BTRFS_SEND_C_WRITE:
          if (cur) cur.data.write += c.data.length;
          break;
        case C.BTRFS_SEND_C_CLONE:
          if (cur) cur.data.clone += Number(c.cloneLen);
          break;
        case C.BTRFS_SEND_C_ENCODED_WRITE: {
          const label = codecLabel(c.compression);
          if (cur) {
            cur.codecs[label] = (cur.codecs[label] ?? 0) + 1;
            cur.data.encoded += c.data.length;
            cur.data.encodedFile += Number(c.unencodedFileLen);
          }
          const msg = checkEncoded(c);
          if (msg) problem('encoded', `${msg} (file offset ${c.fileOffset})`, c.path);
          break;
        }
        case C.BTRFS_SEND_C_END:
          if (cur) cur.ended = true;
          cur = undefined;
          break;
      }
    }
  } catch (e) {
    if (!(e instanceof BtrfsTsError)) throw e;
    col.add({
      kind: 'stream', message: `${e.message} [${e.code}]`,
      ...(e.offset !== undefined ? { offset: Number(e.offset) } : {}),
      ...(e.commandIndex !== undefined ? { commandIndex: e.commandIndex } : {}),
      ...(e.command !== undefined ? { command: e.command } : {}),
    });
  }
  report.droppedProblems = col.dropped;
  report.ok = col.problems.length === 0 && col.dropped === 0;
  return report;
}

/** Why an ENCODED_WRITE would not give its file range, or null when it decodes to at least that range. */
function checkEncoded(c: Extract<SendCommand, { cmd: typeof C.BTRFS_SEND_C_ENCODED_WRITE }>): string | null {
  const flen = Number(c.unencodedFileLen);
  const ulen = Number(c.unencodedLen);
  const uoff = Number(c.unencodedOffset);
  if ((c.compression ?? 0) === 0) {
    // uncompressed encoded data is the extent itself
    if (c.data.length < uoff + flen) return `uncompressed data has ${c.data.length} bytes, the file range needs ${uoff + flen}`;
    return null;
  }
  if (ulen > BTRFS_MAX_UNCOMPRESSED) {
    return `unencoded_len ${ulen} exceeds the ${BTRFS_MAX_UNCOMPRESSED}-byte limit of compressed extents (not decoded)`;
  }
  try {
    const r = checkEncodedExtent({ compression: c.compression!, encryption: c.encryption ?? 0, data: c.data, unencodedFileLen: flen, unencodedLen: ulen, unencodedOffset: uoff, sectorsize: 4096 });
    if (r.decodedLen < uoff + flen) {
      return `${codecLabel(c.compression)} data decodes to ${r.decodedLen} bytes, short of the stated range ${uoff}..${uoff + flen}`;
    }
    return null;
  } catch (e) {
    if (e instanceof BtrfsTsError) return `${codecLabel(c.compression)} data does not decode: ${e.message}`;
    throw e;
  }
}
