import type { ImageReader } from '../image/read/image.js';
import { statInode } from '../image/read/inodes.js';
import type { SubvolumeInfo } from '../image/read/subvols.js';
import type { TreeRoot } from '../image/read/tree.js';
import {
  BTRFS_EXTENT_DATA_KEY, BTRFS_FIRST_FREE_OBJECTID, BTRFS_INODE_ITEM_KEY, BTRFS_INODE_NODATASUM, BTRFS_LAST_FREE_OBJECTID,
  BTRFS_XATTR_ITEM_KEY, type BtrfsFileExtentItem, type BtrfsInodeItem, decodeDirItems, decodeFileExtentItem, decodeInodeItem,
} from '../image/structs.js';
import * as C from '../stream/constants.js';
import type { KnownCommand } from '../stream/types.js';
import { Backrefs, type CloneRoot } from './backrefs.js';
import { CloneIndex } from './clone-index.js';
import { Scratch } from './extent-data.js';
import { type DataInode, extentCommands, maxWriteSize } from './extents.js';
import { type FullSendOptions, utimesCommand } from './full.js';
import { capabilityCommand, ownerCommands, S_IFLNK, S_IFMT, S_IFREG, xattrCommands, XATTR_NAME_CAPS } from './inode-cmds.js';
import { LruMap } from './lru.js';
import { extentEnd, isZeroExtent, parentHasSame, uncovered } from './incr-extents.js';
import type { ItemChange } from './tree-diff.js';
import { U64_MAX } from '../image/structs/constants.js';

const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;
const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);

export interface ContentContext {
  /** The inode's path at the receiver once the names are the subvolume's. */
  path: (ino: bigint) => Promise<Uint8Array>;
  /** 'new': created by this send (sent whole); 'same': changed in place; 'gone': deleted. */
  state: (ino: bigint) => 'new' | 'same' | 'gone';
  cloneUuid: Uint8Array;
  /** The parent and the -c sources: the receiver has them as they are. */
  cloneRoots: CloneRoot[];
  /** Told when an inode's UTIMES is sent. */
  timesSet: (ino: bigint) => void;
}

interface Cur {
  ino: bigint;
  item: BtrfsInodeItem;
  /** The parent's item, for an inode changed in place. */
  old?: BtrfsInodeItem;
  data: DataInode;
  wrote: boolean;
  /** Where the data sent for it ends (no TRUNCATE is needed when that is the new, bigger size). */
  dataEnd: bigint;
  capsChanged: boolean;
  /**
   * Its INODE_ITEM is the same in both trees: changed file extent items then map the same bytes (a
   * relocation, or a dedupe into the file in both snapshots, which bumps only the iversion) and the
   * kernel sends nothing for them (changed_extent: cur_ino is not theirs).
   */
  itemSame: boolean;
}

/**
 * The second half of an incremental send: for each inode the trees differ in, in inode order, what the
 * receiver's copy needs once the names are right — a new inode everything (xattrs, data, attributes, as a
 * full send), a changed one only what changed: xattrs set or removed, the file extent items that differ
 * (unless the parent maps the same bytes there, the kernel's is_extent_unchanged), zeros where data became
 * a hole, then TRUNCATE, CHOWN, CHMOD, capabilities and UTIMES as they changed.
 */
export class IncrementalContent {
  private readonly clones = new CloneIndex();
  private readonly sizes = new LruMap<bigint, bigint>(1 << 12);
  private csumRoot: TreeRoot | undefined;
  private readonly scratch = new Scratch();
  private backrefs!: Backrefs;
  /** The inode being sent: inodes below it, and its own bytes below where it is, are final at the receiver. */
  private cur: Cur | undefined;

  constructor(
    private readonly img: ImageReader,
    private readonly sv: SubvolumeInfo,
    private readonly tree: TreeRoot,
    private readonly parentTree: TreeRoot,
    private readonly o: FullSendOptions,
    private readonly ctx: ContentContext,
  ) {}

  async *commands(diff: AsyncIterable<ItemChange> | Iterable<ItemChange>): AsyncGenerator<KnownCommand> {
    this.csumRoot = await this.img.csumTree();
    const self: CloneRoot = {
      tree: this.tree, uuid: this.ctx.cloneUuid, ctransid: this.sv.ctransid, path: this.ctx.path,
      sizeOf: (ino) => this.sizeOf(ino, this.cur), usable: (ino, end) => !!this.cur && (ino < this.cur.ino || (ino === this.cur.ino && end <= this.cur.data.nextWriteOffset)),
    };
    this.backrefs = new Backrefs(this.img, [self, ...this.ctx.cloneRoots]);
    let cur: Cur | undefined;
    let at = 0n;
    for await (const ch of diff) {
      const ino = ch.key.objectid;
      if (ino < BTRFS_FIRST_FREE_OBJECTID || ino > BTRFS_LAST_FREE_OBJECTID) continue;
      if (ino !== at) {
        if (cur) yield* this.finish(cur);
        cur = undefined;
        at = ino;
        const state = this.ctx.state(ino);
        if (state === 'gone') continue;
        // An inode's INODE_ITEM is its first key: when it changed, the change holds both sides' items
        // (most changed inodes; the lookups of each were a good part of this pass)
        const items = ch.key.type === BTRFS_INODE_ITEM_KEY && ch.key.offset === 0n ? ch : undefined;
        const item = items?.left ? decodeInodeItem(items.left) : await statInode(this.img, { root: this.sv.id, ino });
        if (item.nlink === 0) continue;
        const c: Cur = { ino, item, data: { ino, size: item.size, nextWriteOffset: 0n, path: this.pathOnce(ino) }, wrote: false, dataEnd: 0n, capsChanged: false, itemSame: !items };
        this.cur = c;
        if (state === 'new') {
          yield* this.wholeInode(c);
          yield* this.finish(c);
          continue;
        }
        c.old = items?.right ? decodeInodeItem(items.right) : await statInode(this.img, { root: this.parentTree.id, ino });
        // The receiver's size as the data arrives (an encoded write may end unaligned only at or past it).
        // A file that shrank is cut first: what is sent lies below the new size, and an extent ending at
        // the new EOF can then go as it is stored.
        c.data.recvSize = c.old.size;
        if ((item.mode & S_IFMT) === S_IFREG && item.size < c.old.size) {
          yield { cmd: C.BTRFS_SEND_C_TRUNCATE, path: await c.data.path(), size: item.size };
          c.data.recvSize = item.size;
          c.wrote = true;
        }
        cur = c;
      }
      if (!cur) continue;
      if (ch.key.type === BTRFS_XATTR_ITEM_KEY) yield* this.xattrChange(cur, ch);
      else if (ch.key.type === BTRFS_EXTENT_DATA_KEY && (cur.item.mode & S_IFMT) === S_IFREG && !cur.itemSame) yield* this.extentChange(cur, ch);
    }
    if (cur) yield* this.finish(cur);
  }

  /** A new inode: every xattr and extent, as a full send has them. */
  private async *wholeInode(c: Cur): AsyncGenerator<KnownCommand> {
    const from = { objectid: c.ino, type: BTRFS_XATTR_ITEM_KEY, offset: 0n };
    const to = { objectid: c.ino, type: BTRFS_EXTENT_DATA_KEY, offset: U64_MAX };
    for await (const it of this.img.trees.iterate(this.tree, from, to)) {
      if (it.key.type === BTRFS_XATTR_ITEM_KEY) yield* xattrCommands(decodeDirItems(it.data), c.data.path);
      else if (it.key.type === BTRFS_EXTENT_DATA_KEY && (c.item.mode & S_IFMT) === S_IFREG) yield* this.extent(c, it.key.offset, decodeFileExtentItem(it.data));
    }
    if ((c.item.mode & S_IFMT) === S_IFREG && c.data.nextWriteOffset !== c.item.size) {
      yield { cmd: C.BTRFS_SEND_C_TRUNCATE, path: await c.data.path(), size: c.item.size };
    }
    c.wrote = true;
  }

  /** Set what is new or different, remove what is gone (one XATTR_ITEM holds the names of one hash). */
  private async *xattrChange(c: Cur, ch: ItemChange): AsyncGenerator<KnownCommand> {
    const now = ch.left ? decodeDirItems(ch.left) : [];
    const was = ch.right ? decodeDirItems(ch.right) : [];
    const set = now.filter((d) => !was.some((w) => same(w.name, d.name) && same(w.data, d.data)));
    const gone = was.filter((w) => !now.some((d) => same(w.name, d.name)));
    if ([...set, ...gone].some((d) => same(d.name, XATTR_NAME_CAPS))) c.capsChanged = true;
    yield* xattrCommands(set, c.data.path);
    for (const g of gone) yield { cmd: C.BTRFS_SEND_C_REMOVE_XATTR, path: await c.data.path(), name: g.name };
  }

  /**
   * A file extent item that differs: the sent subvolume's item is sent (as data, a clone or zeros) unless
   * the parent maps the same bytes over its range; a parent's item with none at its offset now leaves
   * zeros where no other item covers it.
   */
  private async *extentChange(c: Cur, ch: ItemChange): AsyncGenerator<KnownCommand> {
    const key = ch.key.offset;
    const size = c.item.size;
    const oldSize = c.old!.size;
    // everything below `key` is final at the receiver: a clone from this file may only read there
    c.data.nextWriteOffset = key;
    const fe = ch.left && decodeFileExtentItem(ch.left);
    const old = ch.right && decodeFileExtentItem(ch.right);
    if (fe) {
      if (!(await parentHasSame(this.img, this.parentTree, c.ino, key, fe, size, oldSize, this.img.sectorsize, old))) {
        if (isZeroExtent(fe)) yield* this.zeros(c, key, min(min(extentEnd(key, fe, this.img.sectorsize), size), oldSize));
        else yield* this.extent(c, key, fe);
      }
    }
    // what the parent's item held that no item of the sent file covers now became a hole
    if (!old || isZeroExtent(old)) return;
    const end = min(min(extentEnd(key, old, this.img.sectorsize), size), oldSize);
    for (const [from, to] of await uncovered(this.img, this.tree, c.ino, key, end, this.img.sectorsize, fe)) yield* this.zeros(c, from, to);
  }

  /** send_hole: a punched hole over [from, to) in protocol 2, zeros in write-sized pieces in 1 (UPDATE_EXTENT with --no-data). */
  private async *zeros(c: Cur, from: bigint, to: bigint): AsyncGenerator<KnownCommand> {
    if (from >= to) return;
    c.wrote = true;
    if (to > c.dataEnd) c.dataEnd = to;
    const path = await c.data.path();
    if (this.o.noData) {
      yield { cmd: C.BTRFS_SEND_C_UPDATE_EXTENT, path, fileOffset: from, size: to - from };
      return;
    }
    if (this.o.version >= 2) {
      yield { cmd: C.BTRFS_SEND_C_FALLOCATE, path, mode: C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, fileOffset: from, size: to - from };
      return;
    }
    const piece = BigInt(maxWriteSize(this.o.version));
    for (let at = from; at < to; at += piece) {
      const n = to - at < piece ? to - at : piece;
      yield { cmd: C.BTRFS_SEND_C_WRITE, path, fileOffset: at, data: new Uint8Array(Number(n)) };
    }
  }

  private async *extent(c: Cur, keyOffset: bigint, fe: BtrfsFileExtentItem): AsyncGenerator<KnownCommand> {
    c.wrote = true;
    const x = {
      img: this.img, csumRoot: this.csumRoot, verify: (c.item.flags & BTRFS_INODE_NODATASUM) === 0n, keyOffset, scratch: this.scratch,
      fe, what: `file extent at offset ${keyOffset} of inode ${c.ino} in subvolume ${this.sv.id}`,
    };
    yield* extentCommands(x, c.data, {
      version: this.o.version, compressedData: this.o.compressedData, noData: this.o.noData, sectorsize: this.img.sectorsize,
      tree: this.tree, clones: this.clones, sizeOf: (ino) => this.sizeOf(ino, c), cloneUuid: this.ctx.cloneUuid, cloneCtransid: this.sv.ctransid,
      clonePath: (ino) => this.ctx.path(ino), backrefs: this.backrefs, ...(this.o.dataRoom ? { dataRoom: this.o.dataRoom } : {}),
    });
    if (c.data.nextWriteOffset > c.dataEnd) c.dataEnd = c.data.nextWriteOffset;
    if (c.data.recvSize !== undefined && c.data.nextWriteOffset > c.data.recvSize) c.data.recvSize = c.data.nextWriteOffset;
  }

  /** finish_inode_if_needed: size, owner, mode and capabilities where they changed (or a write cleared them), times. */
  private async *finish(c: Cur): AsyncGenerator<KnownCommand> {
    const path = await c.data.path();
    const old = c.old;
    const m = c.item.mode & S_IFMT;
    if (old) {
      if (m === S_IFREG && c.item.size > old.size && c.dataEnd !== c.item.size) {
        yield { cmd: C.BTRFS_SEND_C_TRUNCATE, path, size: c.item.size };
        c.wrote = true;
      }
      const chown = old.uid !== c.item.uid || old.gid !== c.item.gid;
      // a CHOWN clears set-id bits, a write or truncate the capabilities: both are given back
      yield* ownerCommands(c.item, path, {
        chown, chmod: m !== S_IFLNK && (old.mode !== c.item.mode || ((chown || c.wrote) && (c.item.mode & 0o6000) !== 0)),
      });
      if (chown || c.wrote || c.capsChanged) {
        const caps = await capabilityCommand(this.img, this.tree, c.ino, path);
        if (caps) yield caps;
      }
    } else {
      yield* ownerCommands(c.item, path, { chown: true, chmod: m !== S_IFLNK });
      const caps = await capabilityCommand(this.img, this.tree, c.ino, path);
      if (caps) yield caps;
    }
    yield utimesCommand(path, c.item, this.o.version);
    this.ctx.timesSet(c.ino);
  }

  /**
   * The inode's path, built at the first command that names it: the names are final in this phase, and
   * every data command of the inode asks (a lookup per component and a concatenation each time).
   */
  private pathOnce(ino: bigint): () => Promise<Uint8Array> {
    let path: Uint8Array | undefined;
    return async () => (path ??= await this.ctx.path(ino));
  }

  /** UTIMES of an inode whose times the names changed (a directory entries were added to or removed from). */
  async utimes(ino: bigint): Promise<KnownCommand> {
    const item = await statInode(this.img, { root: this.sv.id, ino });
    return utimesCommand(await this.ctx.path(ino), item, this.o.version);
  }

  private async sizeOf(ino: bigint, c: Cur | undefined): Promise<bigint> {
    if (ino === c?.ino) return c.item.size;
    let size = this.sizes.get(ino);
    if (size === undefined) {
      size = (await statInode(this.img, { root: this.sv.id, ino })).size;
      this.sizes.set(ino, size);
    }
    return size;
  }
}
