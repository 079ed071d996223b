import type { TreeRoot } from '../image/read/tree.js';
import { BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, decodeFileExtentItem } from '../image/structs.js';
import type { ImageReader } from '../image/read/image.js';
import * as C from '../stream/constants.js';
import type { KnownCommand } from '../stream/types.js';
import type { CloneSource } from './clone-index.js';
import type { ExtentRef } from './extent-data.js';
import { type DataInode, type DataOptions, extentData } from './extents.js';
import { U64_MAX } from '../image/structs/constants.js';

const PAGE = 4096n;
/** The largest sector size a receiver may have: an unaligned EOF block is never cloned into a file's middle. */
const MAX_SECTOR = 64n * 1024n;

/** The source inode's file extent items from the one holding `from`, in order. */
async function* sourceItems(img: ImageReader, tree: TreeRoot, ino: bigint, from: bigint) {
  const hit = await img.trees.lookupLE(tree, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: from });
  const start = hit && hit.key.objectid === ino && hit.key.type === BTRFS_EXTENT_DATA_KEY ? hit.key.offset : from;
  for await (const it of img.trees.iterate(tree, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: start }, { objectid: ino, type: BTRFS_EXTENT_DATA_KEY, offset: U64_MAX })) {
    yield { offset: it.key.offset, fe: decodeFileExtentItem(it.data) };
  }
}

/**
 * The kernel's clone_range: walk the source file from the clone offset and clone only the parts whose
 * items reference the same disk extent at the same place; holes and other extents in the source are sent
 * as data of the current item, as is an unaligned EOF block that would land inside the file.
 */
export async function* cloneRange(x: ExtentRef, cur: DataInode, o: DataOptions, src: CloneSource, offset: bigint, len: bigint): AsyncGenerator<KnownCommand> {
  const diskByte = x.fe.disk_bytenr;
  let dataOffset = x.fe.offset;
  let cloneOff = src.offset;
  // A sector-sized clone from offset 0 may be inlined at a compressing receiver, and then fail.
  if (cloneOff === 0n && len === BigInt(o.sectorsize)) {
    yield* extentData(x, cur, o, offset, len);
    return;
  }
  const r = src.root;
  const tree = r?.tree ?? o.tree;
  // cloning from the file being sent: never past what the receiver has of it yet
  const selfClone = src.ino === cur.ino && tree.id === o.tree.id;
  const srcSize = await (r?.sizeOf ?? o.sizeOf)(src.ino);
  const clone = async (at: bigint, n: bigint, from: bigint): Promise<KnownCommand> => ({
    cmd: C.BTRFS_SEND_C_CLONE, path: await cur.path(), fileOffset: at, cloneLen: n, cloneUuid: r?.uuid ?? o.cloneUuid,
    cloneCtransid: r?.ctransid ?? o.cloneCtransid, clonePath: await (r?.path ?? o.clonePath)(src.ino), cloneOffset: from,
  });
  for await (const it of sourceItems(x.img, tree, src.ino, cloneOff)) {
    let extLen = it.fe.type === BTRFS_FILE_EXTENT_INLINE ? ((it.fe.ram_bytes + PAGE - 1n) / PAGE) * PAGE : it.fe.num_bytes;
    if (it.offset + extLen <= cloneOff) continue;
    if (it.offset > cloneOff) {
      // an implied hole (NO_HOLES) in the source: our bytes there are data
      const hole = it.offset - cloneOff < len ? it.offset - cloneOff : len;
      yield* extentData(x, cur, o, offset, hole);
      len -= hole;
      if (len === 0n) return;
      offset += hole;
      cloneOff += hole;
      dataOffset += hole;
    }
    if (it.offset >= cloneOff + len || it.offset >= srcSize) break;
    let crossed = false;
    if (it.offset + extLen > srcSize) {
      extLen = srcSize - it.offset;
      crossed = true;
    }
    let cdo = it.fe.offset;
    const same = it.fe.type !== BTRFS_FILE_EXTENT_INLINE && it.fe.disk_bytenr === diskByte;
    if (same) {
      cloneOff = it.offset;
      if (cdo < dataOffset && cdo + extLen > dataOffset) {
        const skip = dataOffset - cdo;
        extLen -= skip;
        cdo += skip;
        cloneOff += skip;
      }
    }
    const n = extLen < len ? extLen : len;
    if (same && cdo === dataOffset) {
      const srcEnd = cloneOff + n;
      if (srcEnd === srcSize && srcEnd % MAX_SECTOR !== 0n && offset + n < cur.size) {
        const slen = ((srcEnd - cloneOff) / MAX_SECTOR) * MAX_SECTOR;
        if (slen > 0n) yield await clone(offset, slen, cloneOff);
        yield* extentData(x, cur, o, offset + slen, n - slen);
      } else {
        yield await clone(offset, n, cloneOff);
      }
    } else if (crossed && n < len) {
      break;
    } else {
      yield* extentData(x, cur, o, offset, n);
    }
    len -= n;
    if (len === 0n) return;
    offset += n;
    cloneOff += n;
    if (selfClone && cloneOff >= cur.nextWriteOffset) break;
    dataOffset += n;
  }
  if (len > 0n) yield* extentData(x, cur, o, offset, len);
}
