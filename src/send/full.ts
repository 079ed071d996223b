import { ImageError } from '../errors.js';
import type { ImageReader } from '../image/read/image.js';
import { statInode } from '../image/read/inodes.js';
import type { SubvolumeInfo } from '../image/read/subvols.js';
import type { TreeRoot } from '../image/read/tree.js';
import type { LeafItem } from '../image/structs.js';
import {
  BTRFS_EXTENT_DATA_KEY, BTRFS_FIRST_FREE_OBJECTID, BTRFS_INODE_EXTREF_KEY, BTRFS_INODE_ITEM_KEY,
  BTRFS_INODE_NODATASUM, BTRFS_INODE_REF_KEY, BTRFS_LAST_FREE_OBJECTID, BTRFS_XATTR_ITEM_KEY, type BtrfsFileExtentItem, type BtrfsInodeItem,
  decodeDirItems, decodeFileExtentItem, decodeInodeExtrefs, decodeInodeItem, decodeInodeRefs,
} from '../image/structs.js';
import * as C from '../stream/constants.js';
import type { KnownCommand, SendCommand } from '../stream/types.js';
import { Backrefs, readOnlyCloneRoot, streamUuid } from './backrefs.js';
import { CloneIndex } from './clone-index.js';
import type { DataFill } from './data-fill.js';
import { ExtentAhead } from './extent-ahead.js';
import { type ExtentRef, Scratch, storedBytes } from './extent-data.js';
import { extentCopies } from '../image/read/file-data.js';
import { type DataOptions, extentCommands } from './extents.js';
import { capabilityCommand, createCommand, ownerCommands, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, xattrCommands } from './inode-cmds.js';
import { LruMap } from './lru.js';
import { SendNames } from './names.js';
import { DirUtimesCache } from './utimes-cache.js';
import { U64_MAX } from '../image/structs/constants.js';

/** Items read before the send reaches them (their compressed extents announced to the reading thread). */
const AHEAD = 64;

export interface FullSendOptions {
  version: number;
  compressedData: boolean;
  noData: boolean;
  /** -c: read-only subvolumes the receiver has, cloned from where they share an extent. */
  cloneSources: SubvolumeInfo[];
  /** Where an ENCODED_WRITE's data will be encoded, to read it there (StreamEncoder.dataRoom). */
  dataRoom?: (c: SendCommand, n: number) => Uint8Array | undefined;
  /** Read (and decode) compressed extents ahead on a worker thread (default: yes; extent-ahead.ts). */
  readAhead?: boolean;
  /** Data read into the output behind the send, on another thread (data-fill.ts; the caller settles it). */
  fill?: DataFill;
}

interface Cur {
  ino: bigint;
  item: BtrfsInodeItem;
  refs: { dir: bigint; name: Uint8Array }[];
  refsDone: boolean;
  ignore: boolean;
  nextWriteOffset: bigint;
  /**
   * Its path once its references are processed: fixed until the inode is finished (no other inode is
   * renamed meanwhile), and asked for by every command of its data — building it each time (a lookup per
   * path component, a concatenation) was ~5% of a --compressed-data send's main thread.
   */
  path?: Uint8Array;
}

const mode = (c: Cur): number => c.item.mode & S_IFMT;

/**
 * A full send of one read-only subvolume, command by command, in the kernel's order (fs/btrfs/send.c
 * full_send_tree → changed_cb → finish_inode_if_needed): the subvolume's items in key order; each new
 * inode created under its orphan name, renamed to its first reference once its references are read
 * (parent directories with higher numbers created early under theirs), linked at the others; then its
 * xattrs, its data, TRUNCATE/CHOWN/CHMOD/capabilities, UTIMES (held back for non-empty directories).
 */
export class FullSend {
  private readonly names: SendNames;
  private readonly utimes = new DirUtimesCache();
  private readonly clones = new CloneIndex();
  private readonly sizes = new LruMap<bigint, bigint>(1 << 12);
  /** Directories created early because an inode with a lower number lives in them. */
  private readonly createdEarly = new Set<bigint>();
  private cur: Cur | undefined;
  private tree!: TreeRoot;
  private csumRoot: TreeRoot | undefined;
  private readonly scratch = new Scratch();
  private backrefs!: Backrefs;
  private ahead: ExtentAhead | undefined;
  private dataOpts: DataOptions | undefined;

  constructor(private readonly img: ImageReader, private readonly sv: SubvolumeInfo, private readonly o: FullSendOptions) {
    this.names = new SendNames(img, sv.id);
  }

  private get uuid(): Uint8Array {
    return streamUuid(this.sv);
  }

  async *commands(): AsyncGenerator<KnownCommand> {
    this.tree = await this.img.tree(this.sv.id);
    this.csumRoot = await this.img.csumTree();
    this.backrefs = new Backrefs(this.img, await Promise.all(this.o.cloneSources.map((c) => readOnlyCloneRoot(this.img, c, true))));
    yield { cmd: C.BTRFS_SEND_C_SUBVOL, path: this.sv.name, uuid: this.uuid, ctransid: this.sv.ctransid };
    const from = { objectid: BTRFS_FIRST_FREE_OBJECTID, type: 0, offset: 0n };
    const to = { objectid: BTRFS_LAST_FREE_OBJECTID, type: 255, offset: U64_MAX };
    this.ahead = this.readsAhead();
    try {
      yield* this.items(this.ahead ? this.readAhead(this.img.trees.iterate(this.tree, from, to), this.ahead) : this.img.trees.iterate(this.tree, from, to));
    } finally {
      this.ahead?.close();
    }
    for (const d of this.utimes.flush()) yield await this.utimesOf(d);
  }

  /**
   * A thread reading and decoding compressed extents ahead (extent-ahead.ts) where decoded data is sent:
   * protocol 1. Not where they go out as stored (--compressed-data): reading and checking them on the
   * thread cost the send more CPU than it took off its own thread (4.0 vs 3.0 s for bench/send.sh's
   * source at load 12, the thread idle 94% of the time) and gave no shorter run: those bytes are read
   * behind the send instead, into its output (data-fill.ts). Not for --no-data.
   */
  private readsAhead(): ExtentAhead | undefined {
    if (this.o.compressedData || this.o.noData || this.o.readAhead === false) return undefined;
    const path = this.img.src.path;
    return new ExtentAhead({ ...(path !== undefined ? { path } : {}), csumType: this.img.superblock.csum_type, sectorsize: this.img.sectorsize, decode: true });
  }

  /**
   * The items, read up to AHEAD items before the send gets to them, so that the compressed extents among
   * them are announced to the reading thread while the send works on the ones before.
   */
  private async *readAhead(items: AsyncIterable<LeafItem>, ahead: ExtentAhead): AsyncGenerator<LeafItem> {
    // items read, with the checksum rule of their inode; `next` is the first not yet looked at for the reading thread
    const queue: { item: LeafItem; verify: boolean }[] = [];
    let next = 0;
    let nodatasum = false;
    const it = items[Symbol.asyncIterator]();
    for (let done = false; ;) {
      while (!done && queue.length < AHEAD) {
        const r = await it.next();
        if (r.done) {
          done = true;
          break;
        }
        if (r.value.key.type === BTRFS_INODE_ITEM_KEY) nodatasum = (decodeInodeItem(r.value.data).flags & BTRFS_INODE_NODATASUM) !== 0n;
        queue.push({ item: r.value, verify: !nodatasum });
      }
      // as many extents as the reading thread has room for, in the order the send will claim them
      for (; next < queue.length && ahead.room; next++) {
        const { item, verify } = queue[next]!;
        if (item.key.type !== BTRFS_EXTENT_DATA_KEY) continue;
        const x = this.extentRef(item.key.objectid, item.key.offset, decodeFileExtentItem(item.data), verify);
        await ahead.ahead(
          x,
          () => extentCopies(this.img, this.csumRoot, x.fe.disk_bytenr, Number(x.fe.disk_num_bytes), verify, x.what),
          // without the file: read here, into the slot (not the send's read buffer, which the send is using)
          async (into) => (await storedBytes({ ...x, scratch: new Scratch(into), ahead: undefined })).data,
        );
      }
      const head = queue.shift();
      if (head === undefined) return;
      if (next > 0) next--;
      yield head.item;
    }
  }

  private async *items(items: AsyncIterable<LeafItem>): AsyncGenerator<KnownCommand> {
    for await (const it of items) {
      const { objectid: ino, type } = it.key;
      if (this.cur && this.cur.ino !== ino) yield* this.finish(this.cur);
      if (type === BTRFS_INODE_ITEM_KEY) {
        yield* this.newInode(ino, decodeInodeItem(it.data));
        continue;
      }
      const cur = this.cur;
      if (!cur || cur.ino !== ino) throw new ImageError('IMAGE_NO_INODE', `item type ${type} of inode ${ino} in subvolume ${this.sv.id} has no INODE_ITEM before it`, { command: 'btrfs_inode_item' });
      if (cur.ignore) continue;
      if (type === BTRFS_INODE_REF_KEY || type === BTRFS_INODE_EXTREF_KEY) {
        if (ino === BTRFS_FIRST_FREE_OBJECTID) continue;
        if (type === BTRFS_INODE_REF_KEY) for (const r of decodeInodeRefs(it.data)) cur.refs.push({ dir: it.key.offset, name: r.name });
        else for (const r of decodeInodeExtrefs(it.data)) cur.refs.push({ dir: r.parent_objectid, name: r.name });
        continue;
      }
      if (!cur.refsDone) yield* this.processRefs(cur);
      if (type === BTRFS_XATTR_ITEM_KEY) {
        yield* xattrCommands(decodeDirItems(it.data), () => this.curPath(cur));
      } else if (type === BTRFS_EXTENT_DATA_KEY && (mode(cur) === S_IFREG)) {
        yield* this.extent(cur, it.key.offset, it.data);
      }
    }
    if (this.cur) yield* this.finish(this.cur);
  }

  private extentRef(ino: bigint, keyOffset: bigint, fe: BtrfsFileExtentItem, verify: boolean): ExtentRef {
    const what = `file extent at offset ${keyOffset} of inode ${ino} in subvolume ${this.sv.id}`;
    return { img: this.img, csumRoot: this.csumRoot, verify, keyOffset, fe, what, scratch: this.scratch, ...(this.ahead ? { ahead: this.ahead } : {}), ...(this.o.fill ? { fill: this.o.fill } : {}) };
  }

  private async *newInode(ino: bigint, item: BtrfsInodeItem): AsyncGenerator<KnownCommand> {
    // changed_inode: an inode without links (an orphan awaiting cleanup) is not sent
    const cur: Cur = { ino, item, refs: [], refsDone: false, ignore: item.nlink === 0, nextWriteOffset: 0n };
    this.cur = cur;
    this.names.progress = ino;
    this.names.noteGen(ino, item.generation);
    if (cur.ignore || ino === BTRFS_FIRST_FREE_OBJECTID) return;
    if (this.createdEarly.delete(ino)) return;
    yield await createCommand(this.img, this.sv.id, ino, item, await this.names.path(ino));
  }

  /** process_recorded_refs for a new inode: orphan → first reference, links for the others. */
  private async *processRefs(cur: Cur): AsyncGenerator<KnownCommand> {
    cur.refsDone = true;
    if (cur.refs.length === 0) return;
    let valid = await this.names.path(cur.ino);
    let first = true;
    for (const ref of cur.refs) {
      const full = await this.names.entryPath(ref.dir, ref.name);
      if (ref.dir > cur.ino && !this.createdEarly.has(ref.dir)) {
        const dirItem = await statInode(this.img, { root: this.sv.id, ino: ref.dir });
        yield await createCommand(this.img, this.sv.id, ref.dir, dirItem, await this.names.path(ref.dir));
        this.createdEarly.add(ref.dir);
      }
      if (first) {
        yield { cmd: C.BTRFS_SEND_C_RENAME, path: valid, pathTo: full };
        valid = full;
        first = false;
      } else if (mode(cur) === S_IFDIR) {
        yield { cmd: C.BTRFS_SEND_C_RENAME, path: valid, pathTo: full };
        valid = full;
      } else {
        yield { cmd: C.BTRFS_SEND_C_LINK, path: full, pathLink: valid };
      }
    }
    this.names.progress = cur.ino + 1n;
    for (const ref of cur.refs) if (ref.dir < cur.ino) this.utimes.touch(ref.dir);
    for (const d of this.utimes.trim()) yield await this.utimesOf(d);
  }

  private async *extent(cur: Cur, keyOffset: bigint, data: Uint8Array): AsyncGenerator<KnownCommand> {
    const x = this.extentRef(cur.ino, keyOffset, decodeFileExtentItem(data), (cur.item.flags & BTRFS_INODE_NODATASUM) === 0n);
    const d = { ino: cur.ino, size: cur.item.size, nextWriteOffset: cur.nextWriteOffset, path: () => this.curPath(cur) };
    yield* extentCommands(x, d, this.dataOptions());
    cur.nextWriteOffset = d.nextWriteOffset;
  }

  /** What extentCommands needs of the send: the same for every extent, made once (not an object and three closures per extent). */
  private dataOptions(): DataOptions {
    return this.dataOpts ??= {
      version: this.o.version, compressedData: this.o.compressedData, noData: this.o.noData, sectorsize: this.img.sectorsize,
      tree: this.tree, clones: this.clones, sizeOf: (ino) => this.sizeOf(ino, this.cur!), cloneUuid: this.uuid, cloneCtransid: this.sv.ctransid,
      clonePath: (ino) => this.names.path(ino), backrefs: this.backrefs, ...(this.o.dataRoom ? { dataRoom: this.o.dataRoom } : {}),
    };
  }

  /** The path of the inode being sent, its references processed (Cur.path). */
  private async curPath(cur: Cur): Promise<Uint8Array> {
    return cur.path ??= await this.names.path(cur.ino);
  }

  /** finish_inode_if_needed: size, owner, mode, capabilities, times. */
  private async *finish(cur: Cur): AsyncGenerator<KnownCommand> {
    this.cur = undefined;
    if (cur.ignore) return;
    if (!cur.refsDone) yield* this.processRefs(cur);
    const path = await this.curPath(cur);
    const m = mode(cur);
    if (m === S_IFREG) {
      if (cur.nextWriteOffset !== cur.item.size) yield { cmd: C.BTRFS_SEND_C_TRUNCATE, path, size: cur.item.size };
    }
    yield* ownerCommands(cur.item, path, { chown: true, chmod: m !== S_IFLNK });
    const caps = await capabilityCommand(this.img, this.tree, cur.ino, path);
    if (caps) yield caps;
    this.names.progress = cur.ino + 1n;
    if (m === S_IFDIR && cur.item.size > 0n) this.utimes.touch(cur.ino);
    else yield utimesCommand(path, cur.item, this.o.version);
    for (const d of this.utimes.trim()) yield await this.utimesOf(d);
  }

  /** get_inode_info's i_size: the inode's final size, whether or not it has been sent. */
  private async sizeOf(ino: bigint, cur: Cur): Promise<bigint> {
    if (ino === cur.ino) return cur.item.size;
    let size = this.sizes.get(ino);
    if (size === undefined) {
      size = (await statInode(this.img, { root: this.sv.id, ino })).size;
      this.sizes.set(ino, size);
    }
    return size;
  }

  private async utimesOf(ino: bigint): Promise<KnownCommand> {
    const item = await statInode(this.img, { root: this.sv.id, ino });
    return utimesCommand(await this.names.path(ino), item, this.o.version);
  }
}

/** send_utimes: protocol 2 and later also carry the creation time. */
export function utimesCommand(path: Uint8Array, item: BtrfsInodeItem, version: number): KnownCommand {
  const c: KnownCommand = { cmd: C.BTRFS_SEND_C_UTIMES, path, atime: item.atime, mtime: item.mtime, ctime: item.ctime };
  if (version >= 2) c.otime = item.otime;
  return c;
}
