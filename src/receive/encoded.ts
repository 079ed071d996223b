import { decodeEncodedData } from './limits.js';
import { ReceiveError } from '../errors.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { getInode } from '../image/write/inode.js';
import { extentCounts, type PlanReport } from '../plan/report.js';
import { type PlanDecision, planEncodedWrite } from '../plan/rules.js';
import { dataSectorCrcs } from '../stream/command-crc.js';
import type { EncodedWriteCmd } from '../stream/types.js';
import type { FileWriter } from './file-write.js';
import type { ImageReceiverOptions } from './image-receiver.js';

export interface EncodedContext {
  fs: Filesystem;
  writer: FileWriter;
  report: PlanReport;
  root: bigint;
  ino: bigint;
  opts: Pick<ImageReceiverOptions, 'forceDecompress' | 'compress' | 'checkExtents'>;
}

/**
 * One ENCODED_WRITE: the planner decides; pass-through stores the compressed bytes as an extent, anything
 * else is decoded (as btrfs receive's fallback does) and written as plain data — recompressed by the writer
 * when `--compress` is on. With `--check-extents` a passed-through extent is decoded first, to refuse data
 * that would not read back.
 */
export function applyEncodedWrite(x: EncodedContext, c: EncodedWriteCmd): void {
  const { fs, writer, root, ino, opts } = x;
  writer.flushFile(root, ino);
  const d = planEncodedWrite(c, { sectorsize: fs.sectorsize, iSize: getInode(fs, root, ino)!.size, forceDecompress: opts.forceDecompress ?? false });
  const recompress = d.action === 'decompress' && opts.compress !== undefined;
  x.report.addEncoded(extentCounts(c, d, recompress ? 'recompress' : d.action));
  if (d.action === 'pass-through' && !opts.checkExtents) {
    passThrough(writer, root, ino, c, d);
    return;
  }
  const uoff = Number(c.unencodedOffset);
  const flen = Number(c.unencodedFileLen);
  const plain = d.diskType === undefined
    ? c.data
    : decodeEncodedData(d.diskType, c.data, c.unencodedLen, uoff + flen, d.lzoSectorSize ?? fs.sectorsize);
  if (plain.length < uoff + flen) throw new ReceiveError('ENCODED_SHORT', `encoded data holds ${plain.length} bytes, the write needs ${uoff + flen}`);
  if (d.action === 'pass-through') passThrough(writer, root, ino, c, d);
  else writer.write(root, ino, c.fileOffset, plain.subarray(uoff, uoff + flen));
}

function passThrough(writer: FileWriter, root: bigint, ino: bigint, c: EncodedWriteCmd, d: PlanDecision): void {
  writer.passThrough(root, ino, c.fileOffset, {
    data: c.data, type: d.diskType!, ramBytes: c.unencodedLen, uoff: c.unencodedOffset, fileLen: c.unencodedFileLen, inline: d.inline ?? false,
    sectorCrcs: dataSectorCrcs(c),
  });
}
