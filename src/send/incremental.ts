import { ImageError } from '../errors.js';
import type { ImageReader } from '../image/read/image.js';
import { inodeLinks, readDir, statInode } from '../image/read/inodes.js';
import type { SubvolumeInfo } from '../image/read/subvols.js';
import type { TreeRoot } from '../image/read/tree.js';
import {
  BTRFS_FIRST_FREE_OBJECTID, BTRFS_INODE_EXTREF_KEY, BTRFS_INODE_ITEM_KEY, BTRFS_INODE_REF_KEY, BTRFS_LAST_FREE_OBJECTID,
  type InodeIdentity, inodeIdentity,
} from '../image/structs.js';
import * as C from '../stream/constants.js';
import type { KnownCommand } from '../stream/types.js';
import { readOnlyCloneRoot, streamUuid } from './backrefs.js';
import type { FullSendOptions } from './full.js';
import { IncrementalContent } from './incr-content.js';
import { createCommand, S_IFDIR, S_IFMT } from './inode-cmds.js';
import { type Entry, entryId, RecvNamespace, type VKey } from './recv-names.js';
import { TreeDiff } from './tree-diff.js';

/** An INODE_ITEM's identity where it has links; an inode without (an orphan awaiting cleanup) counts as absent. */
function linked(b: Uint8Array | undefined): InodeIdentity | undefined {
  const i = b && inodeIdentity(b);
  return i && i.nlink > 0 ? i : undefined;
}

/** One side's version of an inode whose names change: generation, mode and every reference. */
interface Side { gen: bigint; mode: number; refs: Entry[] }

/** An inode whose names change in the send: `same` when both trees have the same inode (else p / c are two inodes). */
interface Moved { ino: bigint; same: boolean; p?: Side; c?: Side; added?: Entry[] }

/** Inodes whose number stands for another inode in the sent subvolume (deleted, or deleted and reused). */
type Versions = Map<bigint, { p?: { gen: bigint; mode: number }; c?: { gen: bigint; mode: number } }>;

/**
 * An incremental send (btrfs send -p): the difference between the parent and the subvolume, found by
 * comparing their trees (shared blocks skipped), as commands that turn the receiver's snapshot of the
 * parent into the subvolume. The names are changed in four steps: (1) every reference the subvolume no
 * longer has is removed — unlinked, or for a directory or a file's last name kept where it is or, when a
 * new reference will take that name, renamed to its orphan name o<ino>-<gen>-<idx> in the top directory;
 * (2) new inodes are created under their orphan names; (3) every new reference is made, by renaming the
 * inode from where it waits or linking, a directory whose new parent is inside it waiting for the
 * directories in between (attach); (4) directories that are gone, empty by then, are removed. No rename
 * meets an occupied name: whatever held a name that step 3 makes is gone or at its orphan name. Then
 * each changed inode gets its xattrs, its changed data and its attributes (incr-content.ts).
 */
export class IncrementalSend {
  private readonly versions: Versions = new Map();
  private ns!: RecvNamespace;
  private tree!: TreeRoot;
  private parentTree!: TreeRoot;
  /** Directories whose entries the send changes: their times are set again at the end. */
  private readonly dirty = new Set<bigint>();
  /** Inode versions waiting under their orphan name, or at an old name of theirs (renamed once, in step 3). */
  private readonly orphaned = new Set<VKey>();

  constructor(
    private readonly img: ImageReader,
    private readonly sv: SubvolumeInfo,
    private readonly parent: SubvolumeInfo,
    private readonly o: FullSendOptions,
  ) {}

  /** The version key of inode `ino` as a reference from the parent ('p') or the sent subvolume ('c') means it. */
  key(side: 'p' | 'c', ino: bigint): VKey {
    return this.versions.get(ino)?.[side] ? `${side}${ino}` : `s${ino}`;
  }

  async *commands(): AsyncGenerator<KnownCommand> {
    this.tree = await this.img.tree(this.sv.id);
    this.parentTree = await this.img.tree(this.parent.id);
    this.ns = new RecvNamespace(this.img, this.parent.id, this.sv.id, (ino) => this.key('p', ino));
    const p = this.parent;
    yield { cmd: C.BTRFS_SEND_C_SNAPSHOT, path: this.sv.name, uuid: streamUuid(this.sv), ctransid: this.sv.ctransid, cloneUuid: streamUuid(p), cloneCtransid: p.ctransid };
    const diff = new TreeDiff(this.img, this.tree, this.parentTree);
    const moved = await this.collect(diff);
    yield* this.detach(moved);
    yield* this.create(moved);
    yield* this.attach(moved);
    for (const m of moved) {
      if (m.p && !m.same && (m.p.mode & S_IFMT) === S_IFDIR) yield { cmd: C.BTRFS_SEND_C_RMDIR, path: await this.ns.path(`p${m.ino}`) };
    }
    const content = new IncrementalContent(this.img, this.sv, this.tree, this.parentTree, this.o, {
      path: (ino) => this.ns.path(this.key('c', ino)),
      state: (ino) => {
        const v = this.versions.get(ino);
        return !v ? 'same' : v.c ? 'new' : 'gone';
      },
      cloneUuid: streamUuid(this.sv),
      cloneRoots: [await readOnlyCloneRoot(this.img, this.parent), ...await Promise.all(this.o.cloneSources.map((s) => readOnlyCloneRoot(this.img, s, true)))],
      // the times of a directory the names changed in are set when it is finished, or at the end
      timesSet: (ino) => this.dirty.delete(ino),
    });
    yield* content.commands(diff.again());
    for (const d of this.dirty) yield await content.utimes(d);
  }

  /** Pass over the differences for what the names need: inodes created, deleted or reused, and changed references. */
  private async collect(diff: TreeDiff): Promise<Moved[]> {
    const touched = new Set<bigint>();
    // Both sides of an inode kept whose INODE_ITEM changed and whose references did (nearly every inode
    // whose names change: a rename sets its ctime), so that the pass below looks up neither. An inode's
    // references come right after its INODE_ITEM in key order.
    type Pair = { ino: bigint; p: { gen: bigint; mode: number }; c: { gen: bigint; mode: number } };
    const kept = new Map<bigint, Pair>();
    let last: Pair | undefined;
    for await (const ch of diff.first()) {
      const { objectid: ino, type } = ch.key;
      if (ino < BTRFS_FIRST_FREE_OBJECTID || ino > BTRFS_LAST_FREE_OBJECTID) continue;
      if (type === BTRFS_INODE_ITEM_KEY) {
        // an inode without links (an orphan awaiting cleanup) is not there for the receiver
        const l = linked(ch.left);
        const r = linked(ch.right);
        if (l && r && l.generation === r.generation && (l.mode & S_IFMT) === (r.mode & S_IFMT)) {
          last = { ino, p: { gen: r.generation, mode: r.mode }, c: { gen: l.generation, mode: l.mode } };
          continue;
        }
        this.versions.set(ino, { ...(r ? { p: { gen: r.generation, mode: r.mode } } : {}), ...(l ? { c: { gen: l.generation, mode: l.mode } } : {}) });
        if (l || r) touched.add(ino);
      } else if ((type === BTRFS_INODE_REF_KEY || type === BTRFS_INODE_EXTREF_KEY) && ino !== BTRFS_FIRST_FREE_OBJECTID) {
        touched.add(ino);
        if (last?.ino === ino) kept.set(ino, last);
      }
    }
    // A directory number the subvolume reuses: what was in the old one and what is in the new one moves,
    // even where a reference item reads the same in both trees.
    for (const [ino, v] of this.versions) {
      if (!v.p || !v.c) continue;
      if ((v.p.mode & S_IFMT) === S_IFDIR) for await (const e of readDir(this.img, { root: this.parent.id, ino })) if (!e.subvolume) touched.add(e.location.ino);
      if ((v.c.mode & S_IFMT) === S_IFDIR) for await (const e of readDir(this.img, { root: this.sv.id, ino })) if (!e.subvolume) touched.add(e.location.ino);
    }
    const out: Moved[] = [];
    for (const ino of [...touched].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      const v = this.versions.get(ino);
      if (v && !v.p && !v.c) continue;
      const m: Moved = { ino, same: !v };
      const side = async (s: 'p' | 'c', root: bigint, known?: { gen: bigint; mode: number }): Promise<Side> => {
        const item: { gen: bigint; mode: number } = known ?? await statInode(this.img, { root, ino }).then((i) => ({ gen: i.generation, mode: i.mode }));
        const refs = (await inodeLinks(this.img, { root, ino })).map((l) => ({ dir: this.key(s, l.parent), name: l.name }));
        return { ...item, refs };
      };
      if (!v || v.p) m.p = await side('p', this.parent.id, v ? v.p : kept.get(ino)?.p);
      if (!v || v.c) m.c = await side('c', this.sv.id, v ? v.c : kept.get(ino)?.c);
      out.push(m);
    }
    return out;
  }

  private vkey(m: Moved, s: 'p' | 'c'): VKey {
    return m.same ? `s${m.ino}` : `${s}${m.ino}`;
  }

  private touch(e: Entry): void {
    if (e.dir[0] !== 'p') this.dirty.add(BigInt(e.dir.slice(1)));
  }

  private async orphan(m: Moved, s: 'p' | 'c'): Promise<Entry> {
    this.dirty.add(BTRFS_FIRST_FREE_OBJECTID);
    return this.ns.orphan(this.vkey(m, s), m.ino, m[s]!.gen);
  }

  /** The references of the sent subvolume's inode `m` that the parent's does not have (asked in steps 1 and 3). */
  private added(m: Moved): Entry[] {
    if (m.added) return m.added;
    const had = new Set(m.same ? m.p!.refs.map(entryId) : []);
    return (m.added = m.c!.refs.filter((e) => !had.has(entryId(e))));
  }

  /**
   * Step 1: references the subvolume does not have are removed; what must live on waits under its orphan
   * name — or, when no new reference will be made at that old name, where it is, renamed once in step 3
   * as the kernel would.
   */
  private async *detach(moved: Moved[]): AsyncGenerator<KnownCommand> {
    const targets = new Set(moved.flatMap((m) => (m.c ? this.added(m).map(entryId) : [])));
    for (const m of moved) {
      if (!m.p) continue;
      const v = this.vkey(m, 'p');
      const keep = new Set(m.same ? m.c!.refs.map(entryId) : []);
      const removed = m.p.refs.filter((e) => !keep.has(entryId(e)));
      this.ns.set(v, m.p.refs);
      if (removed.length === 0) continue;
      for (const e of removed) this.touch(e);
      const kept = m.p.refs.filter((e) => keep.has(entryId(e)));
      if ((m.p.mode & S_IFMT) === S_IFDIR || (m.same && kept.length === 0)) {
        const stay = removed[0]!;
        if (m.same && !targets.has(entryId(stay))) {
          for (const e of removed.slice(1)) yield { cmd: C.BTRFS_SEND_C_UNLINK, path: await this.ns.entryPath(e) };
          this.ns.set(v, [stay]);
          this.orphaned.add(v);
          continue;
        }
        // a directory (one name) or a file losing every name it had, whose name a new reference takes: out
        // of the way, kept under its orphan name
        const to = await this.orphan(m, 'p');
        yield { cmd: C.BTRFS_SEND_C_RENAME, path: await this.ns.entryPath(stay), pathTo: await this.ns.entryPath(to) };
        for (const e of removed.slice(1)) yield { cmd: C.BTRFS_SEND_C_UNLINK, path: await this.ns.entryPath(e) };
        this.ns.set(v, [to]);
        this.orphaned.add(v);
      } else {
        for (const e of removed) yield { cmd: C.BTRFS_SEND_C_UNLINK, path: await this.ns.entryPath(e) };
        this.ns.set(v, kept);
      }
    }
  }

  /** Step 2: inodes new in the subvolume, under their orphan names. */
  private async *create(moved: Moved[]): AsyncGenerator<KnownCommand> {
    for (const m of moved) {
      if (m.same || !m.c) continue;
      const at = await this.orphan(m, 'c');
      this.ns.set(`c${m.ino}`, [at]);
      this.orphaned.add(`c${m.ino}`);
      const item = await statInode(this.img, { root: this.sv.id, ino: m.ino });
      yield await createCommand(this.img, this.sv.id, m.ino, item, await this.ns.entryPath(at));
    }
  }

  /**
   * Step 3: the subvolume's new references: the waiting inode renamed to the first, links for the others.
   * A directory whose new parent is inside it for now waits for the directories in between to move (the
   * kernel's wait_for_dest_dir_move): one of them always can — were every directory between them where it
   * ends, the new parent would be inside it in the sent subvolume too.
   */
  private async *attach(moved: Moved[]): AsyncGenerator<KnownCommand> {
    let todo = moved.flatMap((m) => (m.c ? [{ m, v: this.vkey(m, 'c'), added: this.added(m) }] : [])).filter((t) => t.added.length > 0);
    while (todo.length > 0) {
      const later: typeof todo = [];
      for (const t of todo) {
        if (this.orphaned.has(t.v) && (t.m.c!.mode & S_IFMT) === S_IFDIR && await this.ns.within(t.added[0]!.dir, t.v)) later.push(t);
        else yield* this.attachOne(t.m, t.v, t.added);
      }
      // only references that loop in the sent subvolume (a damaged image) can stop every one of them
      if (later.length === todo.length) throw new ImageError('IMAGE_DIR_CYCLE', `directories ${later.map((t) => t.m.ino).join(', ')}: their references loop`);
      todo = later;
    }
  }

  private async *attachOne(m: Moved, v: VKey, added: Entry[]): AsyncGenerator<KnownCommand> {
    for (const e of added) this.touch(e);
    let i = 0;
    if (this.orphaned.delete(v)) {
      yield { cmd: C.BTRFS_SEND_C_RENAME, path: await this.ns.path(v), pathTo: await this.ns.entryPath(added[0]!) };
      this.ns.set(v, [added[0]!]);
      i = 1;
    }
    const target = await this.ns.path(v);
    for (; i < added.length; i++) yield { cmd: C.BTRFS_SEND_C_LINK, path: await this.ns.entryPath(added[i]!), pathLink: target };
    this.ns.set(v, m.c!.refs);
  }
}
