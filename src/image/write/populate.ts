import { ImageError } from '../../errors.js';
import {
  BTRFS_COMPRESS_NONE, BTRFS_FIRST_FREE_OBJECTID, BTRFS_INODE_NODATACOW,
  BTRFS_INODE_NODATASUM,
} from '../structs/constants.js';
import { BTRFS_FILE_EXTENT_INLINE_DATA_START, type BtrfsTimespec } from '../structs/fs-items.js';
import { maxItemSize } from './btree.js';
import { BTRFS_MAX_EXTENT_SIZE, insertFileExtent, maxInlineSize, writeDataExtent, writeInlineExtent } from './file-data.js';
import { addDataCsums } from './extents.js';
import type { Filesystem } from './filesystem.js';
import { createInode, getInode, linkInode, setXattr, updateInode } from './inode.js';
import { createSubvolume, setDefaultSubvolume } from './subvol.js';

/**
 * Builds a subvolume from a description of files, as `mkfs --rootdir` needs. Pure: the directory walk
 * and file reads happen in src/dirtree/rootdir.ts and arrive here as stats and a read callback, so
 * memory stays bounded by the read buffer whatever the file sizes.
 */
export interface SourceStat {
  mode: number;
  uid: number;
  gid: number;
  /** Device number in the kernel's encoding (MKDEV: major << 20 | minor), as btrfs stores it. */
  rdev: bigint;
  size: bigint;
  atime: BtrfsTimespec;
  mtime: BtrfsTimespec;
  ctime: BtrfsTimespec;
  otime: BtrfsTimespec;
  /** Inode flags (mkfs --inode-flags: BTRFS_INODE_NODATACOW, BTRFS_INODE_NODATASUM); default none. */
  flags?: bigint;
}

/** Compressor for data extents: returns the compressed bytes, or null when compression does not pay. */
export interface ExtentCompressor {
  type: 1 | 2 | 3;
  compress(data: Uint8Array): Uint8Array | null;
}

/** Reads up to `len` bytes of a source file at `offset`; a short result means end of file. */
export type ReadAt = (offset: bigint, len: number) => Uint8Array;

/** mkfs --reflink: shares `len` bytes of the source file at `offset` into the image at `physical` instead of writing them. */
export type CloneAt = (offset: bigint, physical: bigint, len: number) => void;

const READ_BUF = 1 << 20;
/** The kernel compresses at most 128 KiB of file data into one extent. */
const COMPRESS_CHUNK = 128 * 1024;

export class Populator {
  constructor(
    private readonly fs: Filesystem,
    readonly root: bigint = 5n,
    private readonly compressor?: ExtentCompressor,
  ) {}

  /** Inode of the subvolume's top directory. */
  get topDir(): bigint {
    return BTRFS_FIRST_FREE_OBJECTID;
  }

  /** Give the top directory the source root's owner, mode, times (and flags). */
  setTopDirAttrs(st: SourceStat): void {
    updateInode(this.fs, this.root, this.topDir, {
      mode: st.mode, uid: st.uid, gid: st.gid, atime: st.atime, mtime: st.mtime, ctime: st.ctime, otime: st.otime,
      ...(st.flags ? { flags: st.flags } : {}),
    });
  }

  /** Any inode that is not a regular file with data: dir, fifo, socket, char/block device. */
  addNode(dir: bigint, name: Uint8Array, st: SourceStat): bigint {
    const ino = createInode(this.fs, this.root, attrs(st));
    linkInode(this.fs, this.root, dir, name, ino);
    return ino;
  }

  addSymlink(dir: bigint, name: Uint8Array, st: SourceStat, target: Uint8Array): bigint {
    if (target.length === 0 || target.length > maxInlineSizeForSymlink(this.fs)) {
      throw new ImageError('IMAGE_SYMLINK_TOO_LONG', `symlink target of ${target.length} bytes does not fit inline`);
    }
    const ino = createInode(this.fs, this.root, attrs(st));
    writeInlineExtent(this.fs, this.root, ino, target);
    updateInode(this.fs, this.root, ino, { size: BigInt(target.length) });
    linkInode(this.fs, this.root, dir, name, ino);
    return ino;
  }

  /**
   * A subvolume named `name` in `dir` whose top directory takes `st`; returns the Populator that fills it
   * (mkfs --subvol). `isDefault`: it becomes the default subvolume.
   */
  addSubvolume(dir: bigint, name: Uint8Array, st: SourceStat, o: { readonly: boolean; isDefault: boolean; uuid?: Uint8Array; time?: BtrfsTimespec }): Populator {
    const rootid = createSubvolume(this.fs, { parentRoot: this.root, parentDir: dir, name, readonly: o.readonly, uuid: o.uuid, time: o.time });
    if (o.isDefault) setDefaultSubvolume(this.fs, rootid);
    const sub = new Populator(this.fs, rootid, this.compressor);
    sub.setTopDirAttrs(st);
    return sub;
  }

  /** Another name for an inode created earlier (hard link). */
  addLink(dir: bigint, name: Uint8Array, ino: bigint): void {
    linkInode(this.fs, this.root, dir, name, ino);
  }

  setXattr(ino: bigint, name: Uint8Array, value: Uint8Array): void {
    setXattr(this.fs, this.root, ino, name, value);
  }

  /**
   * A regular file: small ones inline, others in extents; all-zero sectors become holes. A NODATACOW or
   * NODATASUM file gets neither data checksums nor compression (as the kernel and mkfs.btrfs write them).
   */
  addFile(dir: bigint, name: Uint8Array, st: SourceStat, read: ReadAt, clone?: CloneAt): bigint {
    const ino = createInode(this.fs, this.root, attrs(st));
    this.writeContent(ino, st.size, read, ((st.flags ?? 0n) & (BTRFS_INODE_NODATACOW | BTRFS_INODE_NODATASUM)) === 0n, clone);
    updateInode(this.fs, this.root, ino, { size: st.size });
    linkInode(this.fs, this.root, dir, name, ino);
    return ino;
  }

  private writeContent(ino: bigint, size: bigint, read: ReadAt, datasum: boolean, clone?: CloneAt): void {
    if (size === 0n) return;
    const fs = this.fs;
    if (size < BigInt(fs.sectorsize) && size <= BigInt(maxInlineSize(fs))) {
      const data = read(0n, Number(size));
      if (data.length > 0) writeInlineExtent(fs, this.root, ino, data);
      return;
    }
    if (this.compressor && datasum && !clone) return this.writeCompressed(ino, size, read, this.compressor);
    const ss = fs.sectorsize;
    let cur: { fileStart: bigint; bytenr: bigint; reserved: bigint; written: bigint } | undefined;
    const close = (): void => {
      if (!cur) return;
      fs.releaseData(cur.bytenr + cur.written, cur.reserved - cur.written);
      insertFileExtent(fs, this.root, ino, cur.fileStart, {
        disk_bytenr: cur.bytenr, disk_num_bytes: cur.written, offset: 0n, num_bytes: cur.written, ram_bytes: cur.written, fresh: true,
      });
      cur = undefined;
    };
    for (let off = 0n; off < size; off += BigInt(READ_BUF)) {
      const want = Number(size - off < BigInt(READ_BUF) ? size - off : BigInt(READ_BUF));
      const got = read(off, want);
      if (got.length === 0) break; // file shrank while reading: the rest stays a hole
      const buf = got.length % ss === 0 ? got : padTo(got, Math.ceil(got.length / ss) * ss);
      // runs of non-zero sectors are data; zero sectors are holes (NO_HOLES: nothing stored)
      let s = 0;
      const nsec = buf.length / ss;
      while (s < nsec) {
        if (isZero(buf, s * ss, ss)) {
          close();
          s++;
          continue;
        }
        let e = s + 1;
        while (e < nsec && !isZero(buf, e * ss, ss)) e++;
        let pos = s * ss;
        while (pos < e * ss) {
          const fileOff = off + BigInt(pos);
          if (cur && cur.written === cur.reserved) close();
          if (!cur) {
            const left = ((size - fileOff + BigInt(ss) - 1n) / BigInt(ss)) * BigInt(ss);
            const reserved = left < BTRFS_MAX_EXTENT_SIZE ? left : BTRFS_MAX_EXTENT_SIZE;
            cur = { fileStart: fileOff, bytenr: fs.allocData(reserved), reserved, written: 0n };
          }
          const n = Math.min(e * ss - pos, Number(cur.reserved - cur.written));
          const piece = buf.subarray(pos, pos + n);
          // whole sectors of the source are cloned; a last partial one is written (a clone may not end
          // in the middle of the image file at the source's unaligned end of file)
          const whole = clone ? Number(((size - fileOff) / BigInt(ss)) * BigInt(ss)) : 0;
          const shared = Math.min(n, whole);
          if (shared > 0) {
            for (const phys of fs.chunks.toPhysical(cur.bytenr + cur.written, shared)) clone!(fileOff, phys, shared);
          }
          if (shared < n) fs.writeData(cur.bytenr + cur.written + BigInt(shared), piece.subarray(shared));
          if (datasum) addDataCsums(fs, cur.bytenr + cur.written, piece, undefined, true);
          cur.written += BigInt(n);
          pos += n;
        }
        s = e;
      }
    }
    close();
  }

  private writeCompressed(ino: bigint, size: bigint, read: ReadAt, c: ExtentCompressor): void {
    const ss = this.fs.sectorsize;
    for (let off = 0n; off < size; off += BigInt(COMPRESS_CHUNK)) {
      const want = Number(size - off < BigInt(COMPRESS_CHUNK) ? size - off : BigInt(COMPRESS_CHUNK));
      const got = read(off, want);
      if (got.length === 0) break;
      if (isZero(got, 0, got.length)) continue;
      const packed = c.compress(got);
      const roundUp = (n: number): number => Math.ceil(n / ss) * ss;
      if (packed && roundUp(packed.length) < roundUp(got.length)) {
        writeDataExtent(this.fs, this.root, ino, off, packed, c.type, got.length);
      } else {
        writeDataExtent(this.fs, this.root, ino, off, got, BTRFS_COMPRESS_NONE);
      }
    }
  }

  /** nlink as recorded so far (for callers checking their hard link bookkeeping). */
  nlink(ino: bigint): number {
    return getInode(this.fs, this.root, ino)?.nlink ?? 0;
  }
}

function attrs(st: SourceStat) {
  return { mode: st.mode, uid: st.uid, gid: st.gid, rdev: st.rdev, atime: st.atime, mtime: st.mtime, ctime: st.ctime, otime: st.otime, flags: st.flags ?? 0n };
}

function maxInlineSizeForSymlink(fs: Filesystem): number {
  // symlink targets are always inline: the kernel refuses longer ones (ENAMETOOLONG), and PATH_MAX - 1
  return Math.min(4095, maxItemSize(fs.nodesize) - BTRFS_FILE_EXTENT_INLINE_DATA_START);
}

function isZero(b: Uint8Array, start: number, len: number): boolean {
  const abs = b.byteOffset + start;
  if (abs % 4 === 0 && len % 4 === 0) {
    const w = new Uint32Array(b.buffer, abs, len / 4);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
    return true;
  }
  const end = start + len;
  for (let i = start; i < end; i++) if (b[i] !== 0) return false;
  return true;
}

function padTo(data: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(len);
  out.set(data);
  return out;
}
