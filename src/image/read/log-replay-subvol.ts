import { btrfsExtrefHash, btrfsNameHash } from '../../util/crc32c.js';
import {
  BTRFS_CSUM_TREE_OBJECTID, BTRFS_DIR_INDEX_KEY, BTRFS_DIR_ITEM_KEY, BTRFS_DIR_LOG_INDEX_KEY, BTRFS_DIR_LOG_ITEM_KEY,
  BTRFS_EXTENT_CSUM_KEY, BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_INODE_EXTREF_KEY, BTRFS_INODE_ITEM_KEY,
  BTRFS_INODE_REF_KEY, BTRFS_XATTR_ITEM_KEY, type BtrfsDirItem,
  type BtrfsKey, type LeafItem, decodeDirItems, decodeFileExtentItem, decodeInodeExtrefs, decodeInodeItem,
  decodeInodeRefs, encodeDirItems, encodeFileExtentItem, encodeInodeExtrefs, encodeInodeItem, encodeInodeRefs,
} from '../structs.js';
import type { ImageReader } from './image.js';
import { TreeOverlay } from './overlay.js';
import type { TreeRoot } from './tree.js';
import { U64_MAX, btrfsFileType } from '../structs/constants.js';
import type { LogReplay } from './log-replay.js';

const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const k = (objectid: bigint, type: number, offset: bigint): BtrfsKey => ({ objectid, type, offset });

/** The log replay of one subvolume (log-replay.ts: the stages, as the kernel's tree-log.c replays them). */
export class SubvolReplay {
  private tree!: TreeRoot;
  private touched = new Set<bigint>();
  private dirs = new Set<bigint>();
  private ignored = new Set<bigint>();

  constructor(
    private readonly img: ImageReader,
    private readonly ov: TreeOverlay,
    private readonly root: bigint,
    private readonly log: LeafItem[],
    private readonly result: LogReplay,
  ) {}

  private get(key: BtrfsKey): Promise<LeafItem | undefined> {
    return this.img.trees.lookup(this.tree, key);
  }

  private async *range(from: BtrfsKey, to: BtrfsKey): AsyncGenerator<LeafItem> {
    // collected first: callers change the overlay while walking
    const all: LeafItem[] = [];
    for await (const it of this.img.trees.iterate(this.tree, from, to)) all.push(it);
    yield* all;
  }

  private skip(what: string): void {
    if (!this.result.skipped.includes(what)) this.result.skipped.push(what);
  }

  async run(): Promise<void> {
    this.tree = await this.img.tree(this.root);
    const inodes = this.log.filter((it) => it.key.type === BTRFS_INODE_ITEM_KEY);
    for (const it of inodes) await this.replayInode(it);
    for (const it of this.log) if (it.key.type === BTRFS_DIR_INDEX_KEY && !this.ignored.has(it.key.objectid)) await this.replayDirIndex(it);
    for (const it of this.log) {
      if (this.ignored.has(it.key.objectid)) continue;
      const t = it.key.type;
      if (t === BTRFS_INODE_REF_KEY || t === BTRFS_INODE_EXTREF_KEY) await this.replayRefs(it);
      else if (t === BTRFS_EXTENT_DATA_KEY) await this.replayExtent(it);
      else if (t === BTRFS_XATTR_ITEM_KEY) this.ov.put(this.root, it.key, it.data);
      else if (t === BTRFS_EXTENT_CSUM_KEY) this.ov.put(BTRFS_CSUM_TREE_OBJECTID, it.key, it.data);
      else if (![BTRFS_INODE_ITEM_KEY, BTRFS_DIR_INDEX_KEY, BTRFS_DIR_LOG_INDEX_KEY, BTRFS_DIR_LOG_ITEM_KEY, BTRFS_DIR_ITEM_KEY].includes(t)) {
        this.skip(`log items of type ${t}`);
      }
    }
    for (const ino of this.touched) await this.fixInode(ino);
    this.result.inodes += inodes.length - this.ignored.size;
  }

  /** Stage 1: the logged inode item replaces the subvolume's; a directory first loses entries the log dropped. */
  private async replayInode(it: LeafItem): Promise<void> {
    const ino = it.key.objectid;
    const logged = decodeInodeItem(it.data);
    if (logged.nlink === 0) {
      this.ignored.add(ino); // an O_TMPFILE fsynced before it got a name: nothing to show
      return;
    }
    await this.xattrDeletes(ino);
    const old = await this.get(it.key);
    const prev = old ? decodeInodeItem(old.data) : undefined;
    const isDir = (logged.mode & 0o170000) === 0o040000;
    if (isDir) {
      this.dirs.add(ino);
      await this.dirDeletes(ino);
    }
    // generation 0: logged only to say the inode exists (a parent's fsync); its size is not the file's
    const inode = { ...logged, generation: logged.generation || prev?.generation || 0n };
    if (!isDir && logged.generation === 0n && prev) inode.size = prev.size;
    this.ov.put(this.root, it.key, encodeInodeItem(inode));
    this.touched.add(ino);
    if (!isDir && (logged.mode & 0o170000) === 0o100000) {
      // extents past the logged size go (a truncate that the fsync logged)
      const from = ((inode.size + BigInt(this.img.sectorsize) - 1n) / BigInt(this.img.sectorsize)) * BigInt(this.img.sectorsize);
      for await (const e of this.range(k(ino, BTRFS_EXTENT_DATA_KEY, from), k(ino, BTRFS_EXTENT_DATA_KEY, U64_MAX))) this.ov.delete(this.root, e.key);
    }
  }

  /**
   * The kernel's replay_xattr_deletes: for every logged inode, an xattr item of the subvolume whose key the
   * log does not hold was removed after the commit. Items the log does hold are replaced whole later, which
   * drops their removed names too.
   */
  private async xattrDeletes(ino: bigint): Promise<void> {
    for await (const x of this.range(k(ino, BTRFS_XATTR_ITEM_KEY, 0n), k(ino, BTRFS_XATTR_ITEM_KEY, U64_MAX))) {
      if (!this.log.some((l) => l.key.objectid === ino && l.key.type === BTRFS_XATTR_ITEM_KEY && l.key.offset === x.key.offset)) this.ov.delete(this.root, x.key);
    }
  }

  /** Entries of `dir` in the index ranges the log covers but not in the log: deleted after the commit. */
  private async dirDeletes(dir: bigint): Promise<void> {
    const ranges = this.log.filter((x) => x.key.objectid === dir && x.key.type === BTRFS_DIR_LOG_INDEX_KEY);
    for (const r of ranges) {
      const end = new DataView(r.data.buffer, r.data.byteOffset, 8).getBigUint64(0, true);
      for await (const e of this.range(k(dir, BTRFS_DIR_INDEX_KEY, r.key.offset), k(dir, BTRFS_DIR_INDEX_KEY, end))) {
        if (this.log.some((x) => x.key.objectid === dir && x.key.type === BTRFS_DIR_INDEX_KEY && x.key.offset === e.key.offset)) continue;
        for (const d of decodeDirItems(e.data)) await this.unlink(dir, d.name, d.location.objectid, d.location.type);
      }
    }
  }

  /** Removes name `name` of inode `child` from `dir`: its index and name-hash entries and the inode's ref. */
  private async unlink(dir: bigint, name: Uint8Array, child: bigint, locType = BTRFS_INODE_ITEM_KEY): Promise<void> {
    for await (const e of this.range(k(dir, BTRFS_DIR_INDEX_KEY, 0n), k(dir, BTRFS_DIR_INDEX_KEY, U64_MAX))) {
      if (decodeDirItems(e.data).some((d) => same(d.name, name))) this.ov.delete(this.root, e.key);
    }
    const hk = k(dir, BTRFS_DIR_ITEM_KEY, BigInt(btrfsNameHash(name)));
    await this.dropName(hk, name, decodeDirItems, encodeDirItems);
    this.dirs.add(dir);
    this.touched.add(dir);
    if (locType !== BTRFS_INODE_ITEM_KEY) {
      this.skip('unlinking a subvolume entry');
      return;
    }
    await this.dropName(k(child, BTRFS_INODE_REF_KEY, dir), name, decodeInodeRefs, encodeInodeRefs);
    // a name past the inode ref's room lives in an extended ref keyed by a hash of (parent, name)
    const ek = k(child, BTRFS_INODE_EXTREF_KEY, btrfsExtrefHash(dir, name));
    const ext = await this.get(ek);
    if (ext) {
      const rest = decodeInodeExtrefs(ext.data).filter((r) => !(r.parent_objectid === dir && same(r.name, name)));
      if (rest.length) this.ov.put(this.root, ek, encodeInodeExtrefs(rest));
      else this.ov.delete(this.root, ek);
    }
    this.touched.add(child);
  }

  /** Takes `name` out of an item holding several names (DIR_ITEM, INODE_REF); an item left empty goes. */
  private async dropName<T extends { name: Uint8Array }>(key: BtrfsKey, name: Uint8Array, decode: (b: Uint8Array) => T[], encode: (v: T[]) => Uint8Array): Promise<void> {
    const hit = await this.get(key);
    if (!hit) return;
    const rest = decode(hit.data).filter((d) => !same(d.name, name));
    if (rest.length) this.ov.put(this.root, key, encode(rest));
    else this.ov.delete(this.root, key);
  }

  /** Adds `dir/name` → `child` at `index`, replacing whatever else had that name. */
  private async link(dir: bigint, name: Uint8Array, index: bigint, entry: BtrfsDirItem): Promise<void> {
    const child = entry.location.objectid;
    const hk = k(dir, BTRFS_DIR_ITEM_KEY, BigInt(btrfsNameHash(name)));
    const hit = await this.get(hk);
    const existing = hit ? decodeDirItems(hit.data).find((d) => same(d.name, name)) : undefined;
    if (existing && existing.location.objectid === child) {
      const idx = await this.get(k(dir, BTRFS_DIR_INDEX_KEY, index));
      if (idx && decodeDirItems(idx.data).some((d) => same(d.name, name))) return;
    }
    if (existing) await this.unlink(dir, name, existing.location.objectid, existing.location.type);
    const again = await this.get(hk);
    this.ov.put(this.root, hk, encodeDirItems([...(again ? decodeDirItems(again.data) : []), { ...entry, name }]));
    this.ov.put(this.root, k(dir, BTRFS_DIR_INDEX_KEY, index), encodeDirItems([{ ...entry, name }]));
    this.dirs.add(dir);
    this.touched.add(dir);
    this.touched.add(child);
  }

  /** Stage 2: a logged directory index entry, when its inode exists. */
  private async replayDirIndex(it: LeafItem): Promise<void> {
    for (const d of decodeDirItems(it.data)) {
      // a subvolume's entry: the kernel's replay inserts names only for inodes of this tree, so an entry the
      // subvolume lacks stays out and one it has stays as it is
      if (d.location.type !== BTRFS_INODE_ITEM_KEY) continue;
      if (this.ignored.has(d.location.objectid) || !(await this.get(k(d.location.objectid, BTRFS_INODE_ITEM_KEY, 0n)))) continue;
      await this.link(it.key.objectid, d.name, it.key.offset, d);
    }
  }

  /** Stage 3: an inode's names under one parent are the logged ones; older names there are unlinked. */
  private async replayRefs(it: LeafItem): Promise<void> {
    const ino = it.key.objectid;
    // the subvolume's root directory names itself '..': nothing to link
    if (it.key.type === BTRFS_INODE_REF_KEY && it.key.offset === ino) return;
    const names = it.key.type === BTRFS_INODE_REF_KEY
      ? decodeInodeRefs(it.data).map((r) => ({ parent: it.key.offset, name: r.name, index: r.index }))
      : decodeInodeExtrefs(it.data).map((r) => ({ parent: r.parent_objectid, name: r.name, index: r.index }));
    // the subvolume's item of the same key: its names the log no longer has were unlinked after the commit
    const old = await this.get(it.key);
    const before = !old ? [] : it.key.type === BTRFS_INODE_REF_KEY
      ? decodeInodeRefs(old.data).map((r) => ({ parent: it.key.offset, name: r.name }))
      : decodeInodeExtrefs(old.data).map((r) => ({ parent: r.parent_objectid, name: r.name }));
    for (const r of before) {
      if (!names.some((n) => n.parent === r.parent && same(n.name, r.name))) await this.unlink(r.parent, r.name, ino);
    }
    const inode = await this.get(k(ino, BTRFS_INODE_ITEM_KEY, 0n));
    if (!inode) return;
    const mode = decodeInodeItem(inode.data).mode;
    const ft = btrfsFileType(mode);
    for (const n of names) {
      if (!(await this.get(k(n.parent, BTRFS_INODE_ITEM_KEY, 0n)))) continue;
      await this.link(n.parent, n.name, n.index, { location: k(ino, BTRFS_INODE_ITEM_KEY, 0n), transid: 0n, type: ft, name: n.name, data: new Uint8Array(0) });
    }
    this.ov.put(this.root, it.key, it.data);
    this.touched.add(ino);
  }

  /** Stage 3: a logged file extent replaces whatever the file had in its range. */
  private async replayExtent(it: LeafItem): Promise<void> {
    const ino = it.key.objectid;
    const start = it.key.offset;
    const fe = decodeFileExtentItem(it.data);
    const ss = BigInt(this.img.sectorsize);
    const len = fe.type === BTRFS_FILE_EXTENT_INLINE ? ((fe.ram_bytes + ss - 1n) / ss) * ss : fe.num_bytes;
    const end = start + len;
    const before = await this.img.trees.lookupLE(this.tree, k(ino, BTRFS_EXTENT_DATA_KEY, start));
    const first = before && before.key.objectid === ino && before.key.type === BTRFS_EXTENT_DATA_KEY ? before.key.offset : start;
    for await (const e of this.range(k(ino, BTRFS_EXTENT_DATA_KEY, first), k(ino, BTRFS_EXTENT_DATA_KEY, end - 1n))) {
      const x = decodeFileExtentItem(e.data);
      const xEnd = e.key.offset + (x.type === BTRFS_FILE_EXTENT_INLINE ? ((x.ram_bytes + ss - 1n) / ss) * ss : x.num_bytes);
      if (xEnd <= start) continue;
      this.ov.delete(this.root, e.key);
      if (x.type === BTRFS_FILE_EXTENT_INLINE) continue;
      if (e.key.offset < start) this.ov.put(this.root, e.key, encodeFileExtentItem({ ...x, num_bytes: start - e.key.offset }));
      if (xEnd > end) {
        const cut = end - e.key.offset;
        this.ov.put(this.root, k(ino, BTRFS_EXTENT_DATA_KEY, end), encodeFileExtentItem({ ...x, offset: x.disk_bytenr ? x.offset + cut : x.offset, num_bytes: x.num_bytes - cut }));
      }
    }
    this.ov.put(this.root, it.key, it.data);
    this.touched.add(ino);
  }

  /** Link count from the names, directory size from the entries: what the kernel recounts after replay. */
  private async fixInode(ino: bigint): Promise<void> {
    const key = k(ino, BTRFS_INODE_ITEM_KEY, 0n);
    const it = await this.get(key);
    if (!it) return;
    const inode = decodeInodeItem(it.data);
    if ((inode.mode & 0o170000) === 0o040000) {
      let size = 0n;
      for await (const e of this.range(k(ino, BTRFS_DIR_INDEX_KEY, 0n), k(ino, BTRFS_DIR_INDEX_KEY, U64_MAX))) {
        for (const d of decodeDirItems(e.data)) size += 2n * BigInt(d.name.length);
      }
      inode.size = size;
      inode.nlink = 1;
    } else {
      let n = 0;
      for await (const e of this.range(k(ino, BTRFS_INODE_REF_KEY, 0n), k(ino, BTRFS_INODE_EXTREF_KEY, U64_MAX))) {
        n += e.key.type === BTRFS_INODE_REF_KEY ? decodeInodeRefs(e.data).length : decodeInodeExtrefs(e.data).length;
      }
      inode.nlink = n;
    }
    this.ov.put(this.root, key, encodeInodeItem(inode));
  }
}
