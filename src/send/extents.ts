import { diskToEncoded } from '../compress/index.js';
import type { TreeRoot } from '../image/read/tree.js';
import {
  BTRFS_COMPRESS_NONE, BTRFS_FILE_EXTENT_INLINE, BTRFS_FILE_EXTENT_PREALLOC, type BtrfsFileExtentItem,
} from '../image/structs.js';
import { planEncodedWrite } from '../plan/rules.js';
import * as C from '../stream/constants.js';
import type { EncodedWriteCmd, KnownCommand, SendCommand, WriteCmd } from '../stream/types.js';
import type { Backrefs } from './backrefs.js';
import { type CloneIndex, pickClone } from './clone-index.js';
import { cloneRange } from './clone-range.js';
import { type ExtentRef, filePieces, storedBytes } from './extent-data.js';

const EMPTY = new Uint8Array(0);

/** The file being sent, as far as its data goes. */
export interface DataInode {
  ino: bigint;
  size: bigint;
  /** Where the receiver's copy ends so far (the kernel's cur_inode_next_write_offset). */
  nextWriteOffset: bigint;
  /** The receiver's file size before these writes, when it is not nextWriteOffset (an incremental send's changed file). */
  recvSize?: bigint;
  path: () => Promise<Uint8Array>;
}

export interface DataOptions {
  version: number;
  compressedData: boolean;
  noData: boolean;
  sectorsize: number;
  /** The sent subvolume's tree (clone sources are read from it). */
  tree: TreeRoot;
  clones: CloneIndex;
  /** Final size of an inode (clone sources must lie within it). */
  sizeOf: (ino: bigint) => Promise<bigint>;
  /** CLONE_UUID / CLONE_CTRANSID of the sent subvolume and the path of an inode already sent. */
  cloneUuid: Uint8Array;
  cloneCtransid: bigint;
  clonePath: (ino: bigint) => Promise<Uint8Array>;
  /** Other clone sources the receiver has (-c sources, the parent), looked up when no sent inode shares the extent. */
  backrefs?: Backrefs;
  /**
   * Where the output will hold a command's data (StreamEncoder.dataRoom): an ENCODED_WRITE's stored bytes
   * are read there, not copied there from a read buffer (the copy was ~4.5% of a --compressed-data send).
   */
  dataRoom?: (c: SendCommand, n: number) => Uint8Array | undefined;
}

/** send_max_size minus 16 KiB of command room: 48 KiB pieces in protocol 1, 128 KiB in 2 and later. */
export function maxWriteSize(version: number): number {
  return version === 1 ? 48 * 1024 : 128 * 1024;
}

function extentEnd(key: bigint, fe: BtrfsFileExtentItem, ss: bigint): bigint {
  if (fe.type === BTRFS_FILE_EXTENT_INLINE) return ((key + fe.ram_bytes + ss - 1n) / ss) * ss;
  return key + fe.num_bytes;
}

/**
 * Commands for one file extent item of a new inode (fs/btrfs/send.c process_extent for a full send):
 * prealloc extents and holes send nothing (the final TRUNCATE gives the size); otherwise CLONE where an
 * inode sent earlier shares the disk extent (send_write_or_clone, clone_range), else the data —
 * ENCODED_WRITE with --compressed-data when the stored bytes can be written as they are, WRITE of the
 * decompressed bytes otherwise, UPDATE_EXTENT with --no-data.
 */
export async function* extentCommands(x: ExtentRef, cur: DataInode, o: DataOptions): AsyncGenerator<KnownCommand> {
  const fe = x.fe;
  const ss = BigInt(o.sectorsize);
  if (fe.type === BTRFS_FILE_EXTENT_PREALLOC) return;
  if (fe.type !== BTRFS_FILE_EXTENT_INLINE && fe.disk_bytenr === 0n) return;
  const offset = x.keyOffset;
  const itemEnd = extentEnd(offset, fe, ss);
  const end = itemEnd < cur.size ? itemEnd : cur.size;
  if (offset >= end) return;
  const len = end - offset;
  if (fe.type !== BTRFS_FILE_EXTENT_INLINE) {
    const extentLen = offset + fe.num_bytes >= cur.size ? cur.size - offset : fe.num_bytes;
    const q = { ino: cur.ino, nextWriteOffset: cur.nextWriteOffset, dataOffset: fe.offset, extentLen, compressed: fe.compression !== BTRFS_COMPRESS_NONE };
    // The sent subvolume's own earlier extents; then (-c, -p) the other clone roots, ranked as the
    // kernel's find_extent_clone does. Its back-reference walk meets the sent subvolume's references
    // first (observed against BTRFS_IOC_SEND) and stops at one that covers the whole extent.
    const own = o.clones.find(fe.disk_bytenr, q);
    const src = !o.backrefs || o.backrefs.empty || (own && own.numBytes >= extentLen)
      ? own
      : pickClone([...(own ? [own] : []), ...await o.backrefs.find(fe.disk_bytenr, q)], o.tree.id, extentLen);
    o.clones.add(fe.disk_bytenr, { ino: cur.ino, fileOffset: offset, dataOffset: fe.offset, numBytes: fe.num_bytes });
    // An unaligned clone is only valid when it ends at both files' EOF (send_write_or_clone).
    if (src && (end % ss === 0n || (end === cur.size && src.offset + len === await (src.root?.sizeOf ?? o.sizeOf)(src.ino)))) {
      yield* cloneRange(x, cur, o, src, offset, len);
      cur.nextWriteOffset = end;
      return;
    }
  }
  yield* extentData(x, cur, o, offset, len);
  cur.nextWriteOffset = end;
}

/** send_extent_data: [offset, offset + len) of the item `x` as UPDATE_EXTENT, ENCODED_WRITE or WRITEs. */
export async function* extentData(x: ExtentRef, cur: DataInode, o: DataOptions, offset: bigint, len: bigint): AsyncGenerator<KnownCommand> {
  const path = await cur.path();
  if (o.noData) {
    yield { cmd: C.BTRFS_SEND_C_UPDATE_EXTENT, path, fileOffset: offset, size: len };
    return;
  }
  const fe = x.fe;
  if (o.compressedData && fe.compression !== BTRFS_COMPRESS_NONE) {
    const inline = fe.type === BTRFS_FILE_EXTENT_INLINE;
    // The kernel sends the stored bytes unless they are more than the range sent (a partly used extent).
    if (inline ? fe.inline_data!.length <= len : fe.disk_num_bytes <= len) {
      const itemLeft = x.keyOffset + fe.num_bytes - offset;
      const enc: EncodedWriteCmd = {
        cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path, fileOffset: offset,
        unencodedFileLen: inline || len < itemLeft ? len : itemLeft, unencodedLen: fe.ram_bytes,
        unencodedOffset: offset - x.keyOffset + (inline ? 0n : fe.offset), compression: diskToEncoded(fe.compression, o.sectorsize),
        data: new Uint8Array(0),
      };
      // send_encoded_inline_extent leaves ENCRYPTION out; send_encoded_extent puts 0
      if (!inline) enc.encryption = 0;
      // every attribute is set before its room is taken; the command goes to the encoder next (or not at
      // all, when it is not passed through below)
      const stored = await storedBytes(x, inline ? undefined : o.dataRoom?.(enc, Number(fe.disk_num_bytes)));
      enc.data = stored.data;
      if (stored.crc !== undefined) enc.dataCrc = stored.crc;
      // Only what a receiver can store as it is (the kernel's encoded-write rules); the rest as plain data.
      const ctx = { sectorsize: o.sectorsize, iSize: cur.recvSize ?? cur.nextWriteOffset, ...(stored.frame ? { zstdFrame: stored.frame } : {}) };
      if (planEncodedWrite(enc, ctx).action === 'pass-through') {
        yield enc;
        return;
      }
    }
  }
  let at = offset;
  // with data read behind the send (ExtentRef.fill), a piece's command takes its room in the output first
  let next: WriteCmd | undefined;
  const room = x.fill && o.dataRoom ? (n: number) => o.dataRoom!(next = { cmd: C.BTRFS_SEND_C_WRITE, path, fileOffset: at, data: EMPTY }, n) : undefined;
  for await (const { data, crc } of filePieces(x, offset, Number(len), maxWriteSize(o.version), room)) {
    const c = next ?? { cmd: C.BTRFS_SEND_C_WRITE, path, fileOffset: at, data };
    next = undefined;
    c.data = data;
    if (crc !== undefined) c.dataCrc = crc;
    yield c;
    at += BigInt(data.length);
  }
}
