import { dropFileExtents } from '../image/write/file-data.js';
import type { Filesystem } from '../image/write/filesystem.js';
import { getInode, updateInode } from '../image/write/inode.js';
import { ExtentWriter, MAX_INLINE, alignUp, padTo, type WriterOptions } from './extent-writer.js';
import { concatBytes } from '../util/bytes.js';
import { CRC_SECTOR } from '../util/crc32c-combine.js';
import { GatherBuffers, type LendingDevice } from './gather-buffers.js';
import { copyShared } from '../util/shared-copy.js';
import { hasExtentsFrom, inlineExtent, readRange } from './file-read.js';

export interface Pending {
  root: bigint;
  ino: bigint;
  start: bigint;
  parts: Uint8Array[];
  len: number;
  /** The buffer of a settled range's copy, handed back for reuse once written out or dropped. */
  own?: Uint8Array;
  /** A settled range's known sector CRCs (the gather buffer's run, see gatherCrcs), moved with its bytes. */
  crcs?: Uint32Array | undefined;
  /** `own` is a whole gather buffer, taken over when the range settled (see SWAP_MIN). */
  holdsGather?: boolean;
}

/**
 * Files gathering at once: past this the oldest is written out. A stream writes one file after another,
 * so older files are done; writing them while their leaves are still in the block cache (instead of all
 * at the end, with many small files) saves reading the leaves again and splitting full ones.
 */
const MAX_PENDING_FILES = 16;

/**
 * A range at least this large settles by keeping the gather buffer it is in, and gathering goes on in
 * another: copying it out cost a pass over nearly every byte of a stream of large files (1.28 GB of
 * big-v1's 1.29 GB), into fresh buffers (0.9 GB allocated: its size classes seldom matched a spare).
 */
const SWAP_MIN = 1 << 20;
/** Ranges holding a gather buffer at once (maxBuffer each): past this the oldest is written out. */
const MAX_HOLDERS = 3;

/**
 * Turns file writes into extents. Writes are gathered per file, as the kernel's page cache keeps them
 * dirty until writeback: contiguous writes to a file become one extent even when commands for other files
 * or its attributes come in between (the kernel's receive gets the same extents that way). Gathered data
 * is written sector-aligned: partial sectors at the edges are completed from the file's current content
 * (read-modify-write), tails past EOF are zero-padded, whole small files become inline extents.
 * Anything that reads or changes a file's extents must `flushFile` it first (or `flush` everything).
 */
export abstract class GatherWriter extends ExtentWriter {
  /** Zeroes what lies between the old EOF and a write past it (file-write.ts, btrfs_cont_expand). */
  abstract zeroEofTail(root: bigint, ino: bigint, isize: bigint, growFrom: bigint): void;

  /** Per file, in the order gathering started (the oldest is written first when memory runs short). */
  private readonly pending = new Map<string, Pending>();
  protected pendingBytes = 0;
  private readonly maxBuffer: number;
  private readonly maxPending: number;
  /** The current file's gathered bytes (maxBuffer, reused) and the pending range that owns them. */
  private gather: Uint8Array = new Uint8Array(0);
  private gatherOwner: Pending | undefined;
  /**
   * Raw CRC32C of the gather buffer's first `gatherCrcsValid` sectors, from the stream's CRC check
   * (WriteCmd.dataSectorCrcs): appended whole sectors keep them, anything else stops the run, and the
   * extent written from the buffer takes its checksums from them instead of a second pass over the data.
   */
  private gatherCrcs = new Uint32Array(0);
  private gatherCrcsValid = 0;
  /** Ranges holding a gather buffer (holdsGather). */
  private holders = 0;
  private readonly buffers: GatherBuffers;

  constructor(fs: Filesystem, opts: WriterOptions = {}) {
    super(fs, opts);
    this.maxBuffer = opts.maxBuffer ?? 8 << 20;
    this.maxPending = Math.max(this.maxBuffer, opts.maxPending ?? 16 << 20);
    // gathered extents go to the image without a copy into the write-behind ring where the device can
    // write from shared memory (not compressed: the codecs take plain buffers)
    const d = fs.device as Partial<LendingDevice>;
    this.buffers = new GatherBuffers(this.maxBuffer, d.settle !== undefined && !opts.compress ? (d as LendingDevice) : undefined);
  }

  /**
   * Gathers `data` (copied: the caller may reuse its buffer, the parser its input chunks). The file being
   * written gathers in one reused buffer; when another file starts gathering, what the previous one has
   * gathered moves into a buffer of its own (bounded by maxPending over all files).
   */
  write(root: bigint, ino: bigint, offset: bigint, data: Uint8Array, sectorCrcs?: Uint32Array): void {
    if (data.length === 0) return;
    const key = `${root}:${ino}`;
    const p = this.pending.get(key);
    const fits = p !== undefined && p.len + data.length <= this.maxBuffer;
    if (fits && p.start + BigInt(p.len) === offset) {
      this.gatherInto(p, p.len, data, sectorCrcs);
    } else if (fits && offset + BigInt(data.length) === p.start) {
      // dirty pages merge whichever side they touch: a write just before the gathered range joins it
      this.gatherInto(p, 0, data);
      p.start = offset;
    } else {
      if (p) this.flushPending(key, p);
      const q: Pending = { root, ino, start: offset, parts: [], len: 0 };
      this.pending.set(key, q);
      if (data.length > this.maxBuffer) {
        q.parts = [new Uint8Array(data)]; // a copy (Buffer#slice would be a view of a reused input chunk)
        q.len = data.length;
      } else {
        this.gatherInto(q, 0, data, sectorCrcs);
      }
    }
    this.pendingBytes += data.length;
    while (this.pendingBytes > this.maxPending || this.pending.size > MAX_PENDING_FILES) {
      const [k, oldest] = this.pending.entries().next().value as [string, Pending];
      this.flushPending(k, oldest);
    }
  }

  /** Puts `data` at byte `at` (the end, or 0 to prepend) of p's range, which then lives in the gather buffer. */
  private gatherInto(p: Pending, at: number, data: Uint8Array, sectorCrcs?: Uint32Array): void {
    if (this.gather.length < this.maxBuffer) {
      this.gather = this.buffers.takeGather();
      this.gatherCrcs = new Uint32Array(Math.ceil(this.maxBuffer / Number(this.ss)));
    }
    const old = p.len;
    if (this.gatherOwner !== p) {
      // another file's gathered bytes move out (or keep the buffer, which is replaced), p's move in
      this.settle();
      let o = 0;
      for (const part of p.parts) {
        copyShared(this.gather, part, o);
        o += part.length;
      }
      this.giveBack(p);
      this.gatherOwner = p;
      this.gatherCrcsValid = 0;
      if (p.crcs !== undefined) {
        this.gatherCrcs.set(p.crcs);
        this.gatherCrcsValid = p.crcs.length;
        p.crcs = undefined;
      }
    }
    this.noteSectorCrcs(at, old, sectorCrcs);
    const g = this.gather;
    if (at === 0 && old > 0) g.copyWithin(data.length, 0, old);
    copyShared(g, data, at);
    p.len = old + data.length;
    p.parts = [g.subarray(0, p.len)];
  }

  /**
   * Bytes land at `at` of a range of `old` bytes: the known run grows when they append whole sectors
   * right after it (the run never holds the partial last sector, so an append changes none of it).
   */
  private noteSectorCrcs(at: number, old: number, sectorCrcs: Uint32Array | undefined): void {
    const ss = Number(this.ss);
    if (at === 0 && old > 0) {
      this.gatherCrcsValid = 0; // prepended: every sector moved
      return;
    }
    if (sectorCrcs === undefined || ss !== CRC_SECTOR || this.gatherCrcsValid * ss !== at) return;
    this.gatherCrcs.set(sectorCrcs, this.gatherCrcsValid);
    this.gatherCrcsValid += sectorCrcs.length;
  }

  /** p's range was cut to `keep` bytes: known sector CRCs past its last whole sector no longer apply. */
  protected cutSectorCrcs(p: Pending, keep: number): void {
    const whole = Math.floor(keep / Number(this.ss));
    if (this.gatherOwner === p) this.gatherCrcsValid = Math.min(this.gatherCrcsValid, whole);
    else if (p.crcs !== undefined && p.crcs.length > whole) p.crcs = p.crcs.subarray(0, whole);
  }

  /** The file that owns the gather buffer keeps its bytes in a copy of their own; the buffer is free again. */
  private settle(): void {
    const p = this.gatherOwner;
    this.gatherOwner = undefined;
    if (!p) return;
    const src = p.parts[0]!;
    p.crcs = this.gatherCrcsValid > 0 ? this.gatherCrcs.slice(0, this.gatherCrcsValid) : undefined;
    if (src.length >= SWAP_MIN) {
      // p keeps its bytes where they are
      p.own = this.gather;
      p.holdsGather = true;
      this.gather = this.buffers.takeGather();
      if (++this.holders > MAX_HOLDERS) {
        for (const [k, q] of this.pending) {
          if (q.holdsGather && q !== p) {
            this.flushPending(k, q);
            break;
          }
        }
      }
      return;
    }
    const buf = this.buffers.takeSpare(src.length);
    copyShared(buf, src, 0);
    p.own = buf;
    p.parts = [buf.subarray(0, src.length)];
  }

  private giveBack(p: Pending): void {
    const b = p.own;
    const gather = p.holdsGather === true;
    p.own = undefined;
    p.holdsGather = false;
    if (gather) this.holders--;
    if (b !== undefined) this.buffers.give(b, gather);
  }

  /** Writes out everything gathered (before a commit, and before whole-subvolume operations). */
  flush(): void {
    for (const [k, p] of [...this.pending]) this.flushPending(k, p);
  }

  /** Writes out what is gathered for one file. */
  flushFile(root: bigint, ino: bigint): void {
    // nothing gathered (a run of ENCODED_WRITEs, which flush twice each): no key string to build
    if (this.pending.size === 0) return;
    const key = `${root}:${ino}`;
    const p = this.pending.get(key);
    if (p) this.flushPending(key, p);
  }

  /** Forgets what is gathered for a file that is being deleted. */
  discardFile(root: bigint, ino: bigint): void {
    const key = `${root}:${ino}`;
    const p = this.pending.get(key);
    if (p) {
      this.forget(key, p);
      this.giveBack(p);
    }
  }

  private forget(key: string, p: Pending): void {
    this.pending.delete(key);
    this.pendingBytes -= p.len;
    if (this.gatherOwner === p) this.gatherOwner = undefined;
  }

  protected pendingOf(root: bigint, ino: bigint): Pending | undefined {
    if (this.pending.size === 0) return undefined;
    return this.pending.get(`${root}:${ino}`);
  }

  private flushPending(key: string, p: Pending): void {
    const owner = this.gatherOwner === p;
    const crcs = !owner ? p.crcs : this.gatherCrcsValid > 0 ? this.gatherCrcs.subarray(0, this.gatherCrcsValid) : undefined;
    this.forget(key, p);
    // the gather buffer is reused as soon as this returns: writeNow consumes the bytes before it returns,
    // except an inline extent, which keeps them — `borrowed` makes it take a copy
    const data = p.parts.length === 1 ? p.parts[0]! : concatBytes(p.parts);
    this.writeNow(p.root, p.ino, p.start, data, true, crcs);
    this.giveBack(p);
    if (owner && this.buffers.lending) {
      // the device may still be writing from the gather buffer (lent): gathering goes on in another
      this.buffers.give(this.gather, true);
      this.gather = this.buffers.takeGather();
    }
  }

  protected writeNow(root: bigint, ino: bigint, start: bigint, data: Uint8Array, borrowed = false, sectorCrcs?: Uint32Array): void {
    const fs = this.fs;
    const inode = getInode(fs, root, ino)!;
    const isize = inode.size;
    let end = start + BigInt(data.length);
    if (start > isize) this.zeroEofTail(root, ino, isize, start);
    // a file without extent items (a new one: most files of a receive) has none to fold in or drop: one
    // look for any instead of one per question (inline? any from 0? which to drop?)
    const bare = !hasExtentsFrom(fs, root, ino, 0n);
    // An inline extent must go before anything else is written into the file: fold it into this write
    // when they touch, else turn it into a regular extent of its own.
    const inl = bare ? undefined : inlineExtent(fs, root, ino);
    if (inl) {
      const old = readRange(fs, root, ino, 0n, Number(inl.len));
      dropFileExtents(fs, root, ino, 0n, this.ss);
      if (start <= inl.len) {
        const merged = new Uint8Array(Number(end > inl.len ? end : inl.len));
        merged.set(old);
        merged.set(data, Number(start));
        data = merged;
        sectorCrcs = undefined;
        start = 0n;
        end = BigInt(merged.length);
      } else {
        this.writeAligned(root, ino, 0n, padTo(old, Number(this.ss)));
      }
    }
    const newSize = end > isize ? end : isize;
    if (start === 0n && newSize <= BigInt(MAX_INLINE) && newSize < this.ss && (bare || !hasExtentsFrom(fs, root, ino, 0n))) {
      this.writeInline(root, ino, borrowed ? new Uint8Array(data) : data, bare);
    } else {
      const aStart = start - (start % this.ss);
      const aEnd = alignUp(end, this.ss);
      // the common case (gathered writes, sector aligned) needs no second copy of up to 8 MiB
      const buf = aStart === start && aEnd === end ? data : this.wholeSectors(root, ino, data, start, aStart, aEnd, isize, borrowed);
      if (!bare) dropFileExtents(fs, root, ino, aStart, aEnd);
      // the data's sectors are the extent's sectors only when it starts on a sector
      this.writeAligned(root, ino, aStart, buf, aStart === start ? sectorCrcs : undefined);
    }
    if (newSize !== isize) updateInode(fs, root, ino, { size: newSize });
  }
}
