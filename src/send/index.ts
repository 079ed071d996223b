import { SendError } from '../errors.js';
import type { BtrfsImage, SubvolumeInfo } from '../image/read/index.js';
import { formatUuid } from '../image/structs.js';
import { StreamEncoder } from '../stream/writer.js';
import type { BufferPool } from '../util/bytes.js';
import { nodeOs } from '../util/lazy-builtins.js';
import * as C from '../stream/constants.js';
import type { SendCommand } from '../stream/types.js';
import { DataFill } from './data-fill.js';
import { FillThread } from './data-fill-worker.js';
import { NativeFill } from './data-fill-native.js';
import { FullSend } from './full.js';
import { IncrementalSend } from './incremental.js';

export interface SendOptions {
  /** Stream protocol: 1 (default) or 2 (ENCODED_WRITE, bigger writes); --compressed-data implies 2. */
  proto?: number;
  /** ENCODED_WRITE of compressed extents as stored, where a receiver can write them as they are. */
  compressedData?: boolean;
  /** UPDATE_EXTENT instead of file data (btrfs send --no-data). */
  noData?: boolean;
  /** Parent subvolume path: an incremental send (btrfs send -p), the difference from it. */
  parent?: string;
  /**
   * Clone sources (-c): read-only subvolumes the receiver has; extents shared with them are cloned. Without
   * `parent`, each subvolume's parent is picked among them as btrfs send picks it (goodParent), and each
   * subvolume sent is a clone source of the ones after it.
   */
  cloneSources?: string[];
  /** btrfs send -e: several subvolumes in one stream — one header, and END only after the last. */
  endOnce?: boolean;
  /**
   * Output buffers come from this pool (its size is the chunk size): a consumer done with a yielded
   * buffer may give it back (the CLI does once the buffer is written), so a long send reuses a few.
   */
  bufferPool?: BufferPool;
  /** Called as each subvolume starts (the CLI's "At subvol" line). */
  onSubvolume?: (s: SubvolumeInfo) => void;
  /** The thread that reads data behind a full --compressed-data send, started early (fillThread); the caller closes it. */
  fillThread?: FillThread;
  /**
   * The send's DataFill, made by the caller (sendDataFill) to have its thread write the output too
   * (io/file-sink.ts WriteBehind); the caller closes it, after the output. Else the send makes its own.
   */
  dataFill?: DataFill;
}

/** Output is yielded in buffers of this size (a bigger command gets one of its own), not one per command. */
const CHUNK = 1 << 20;

/** Full buffers held back while data is read into them behind the send (DataFill). */
const HELD = 1;

/** The protocol version a send uses, as btrfs-progs picks it; throws for combinations it refuses. */
export function sendProtocol(o: SendOptions): number {
  const proto = o.proto ?? (o.compressedData ? 2 : 1);
  if (proto === 0) return 2;
  if (proto !== 1 && proto !== 2) throw new SendError('SEND_USAGE', `protocol ${proto} is not supported (1 or 2)`);
  if (o.compressedData && proto < 2) throw new SendError('SEND_USAGE', '--compressed-data requires protocol version >= 2 (requested 1)');
  return proto;
}

const showUuid = (u: Uint8Array): string => (u.every((b) => b === 0) ? '-' : formatUuid(u));

async function readOnlySubvolume(img: BtrfsImage, path: string, role: string): Promise<SubvolumeInfo> {
  const sv = await img.subvolumeByPath(path);
  if (sv.id === 5n) throw new SendError('SEND_NOT_READONLY', `${role} ${JSON.stringify(path)} is the top-level subvolume, which cannot be read-only`, { path });
  if (!sv.readonly) throw new SendError('SEND_NOT_READONLY', `${role} ${JSON.stringify(path)} (id ${sv.id}) is not read-only`, { path });
  return sv;
}

/**
 * Every identity in the snapshot lineage of `sv`: its uuid and received uuid, then those of its snapshot
 * origin, that one's origin, ... as far as the image has them (an origin deleted since still counts by its
 * uuid). Bounded: a damaged image cannot make it loop.
 */
function lineage(sv: SubvolumeInfo, byUuid: Map<string, SubvolumeInfo>): Set<string> {
  const ids = new Set<string>();
  const add = (u: Uint8Array) => { if (!u.every((b) => b === 0)) ids.add(formatUuid(u)); };
  let cur: SubvolumeInfo | undefined = sv;
  for (let hops = 0; cur && hops < 256; hops++) {
    add(cur.uuid);
    add(cur.receivedUuid);
    add(cur.parentUuid);
    cur = cur.parentUuid.every((b) => b === 0) ? undefined : byUuid.get(formatUuid(cur.parentUuid));
  }
  return ids;
}

/**
 * The parent btrfs send picks for `sv` given clone sources and no -p (btrfs-progs' find_good_parent): its
 * snapshot origin when that is a clone source, else the clone source that is a snapshot of the same origin
 * with the ctransid nearest the origin's (the first of equals). undefined where btrfs send refuses ("parent
 * determination failed": no origin, or none of the sources comes from it): the send is then a full one
 * that clones from the sources, which the kernel's send ioctl makes too.
 */
function goodParent(sv: SubvolumeInfo, sources: SubvolumeInfo[], byUuid: Map<string, SubvolumeInfo>): SubvolumeInfo | undefined {
  const origin = sv.parentUuid.every((b) => b === 0) ? undefined : byUuid.get(formatUuid(sv.parentUuid));
  if (!origin) return undefined;
  if (sources.some((s) => s.id === origin.id)) return origin;
  const from = formatUuid(origin.uuid);
  let best: SubvolumeInfo | undefined;
  let bestDiff = 0n;
  for (const s of sources) {
    if (formatUuid(s.parentUuid) !== from) continue;
    const diff = s.ctransid > origin.ctransid ? s.ctransid - origin.ctransid : origin.ctransid - s.ctransid;
    if (!best || diff < bestDiff) {
      best = s;
      bestDiff = diff;
    }
  }
  return best;
}

/**
 * Whether `parent` can be the base of an incremental send of `sv`: they share a snapshot lineage — one is
 * an origin of the other, both come from one origin (siblings, cousins: a read-only snapshot of a writable
 * snapshot of the parent), or both are received copies of one subvolume. The usual cases (a snapshot of
 * the parent, two snapshots of one subvolume, a received chain) are decided by the two subvolumes' own
 * identities; only the rest lists every subvolume to follow origins further.
 */
async function related(sv: SubvolumeInfo, parent: SubvolumeInfo, everyByUuid: () => Promise<Map<string, SubvolumeInfo>>): Promise<boolean> {
  const near = (s: SubvolumeInfo): Set<string> => lineage(s, new Map());
  const mine = near(sv);
  for (const id of near(parent)) if (mine.has(id)) return true;
  const byUuid = await everyByUuid();
  const mineFar = lineage(sv, byUuid);
  for (const id of lineage(parent, byUuid)) if (mineFar.has(id)) return true;
  return false;
}

/** What a send reads: a BtrfsImage, or what openImage returns (its `image`). */
export type SendImage = BtrfsImage | { readonly image: BtrfsImage };

/**
 * The send streams of the read-only subvolumes at `paths` (inside the image, as `ls` takes them), one
 * complete stream (header, commands, END) per subvolume, back to back — what `btrfs send A B ...` writes
 * (with `endOnce`, one stream holding them all, as `btrfs send -e`). Everything is checked
 * before the first byte is yielded. The bytes can go to a file, stdout or straight into receiveStreams.
 */
export async function* sendSubvolumes(from: SendImage, paths: string[], opts: SendOptions = {}): AsyncGenerator<Uint8Array> {
  const img = 'image' in from ? from.image : from;
  const version = sendProtocol(opts);
  if (paths.length === 0) throw new SendError('SEND_USAGE', 'no subvolume to send');
  const svs: SubvolumeInfo[] = [];
  for (const p of paths) svs.push(await readOnlySubvolume(img, p, 'subvolume'));
  const cloneSources: SubvolumeInfo[] = [];
  for (const c of opts.cloneSources ?? []) cloneSources.push(await readOnlySubvolume(img, c, 'clone source'));
  // every subvolume by uuid, listed once if some subvolume sent needs it
  let byUuid: Promise<Map<string, SubvolumeInfo>> | undefined;
  const everyByUuid = () => (byUuid ??= img.listSubvolumes().then((all) => new Map(all.map((x) => [formatUuid(x.uuid), x]))));
  // each subvolume's parent and clone sources
  const plan: { parent?: SubvolumeInfo; cloneSources: SubvolumeInfo[] }[] = [];
  if (opts.parent !== undefined) {
    const parent = await readOnlySubvolume(img, opts.parent, 'parent');
    for (const sv of svs) {
      if (sv.id === parent.id) throw new SendError('SEND_USAGE', `parent ${parent.path} is the subvolume being sent`, { path: sv.path });
      if (!(await related(sv, parent, everyByUuid))) {
        throw new SendError('SEND_UNRELATED_PARENT', `parent ${parent.path} (uuid ${showUuid(parent.uuid)}) is not related to ${sv.path} (parent_uuid ${showUuid(sv.parentUuid)}): no common snapshot origin and not received from one subvolume`, { path: sv.path });
      }
      plan.push({ parent, cloneSources });
    }
  } else if (cloneSources.length > 0) {
    const all = await everyByUuid();
    let sources = cloneSources;
    for (const sv of svs) {
      const parent = goodParent(sv, sources, all);
      plan.push({ ...(parent ? { parent } : {}), cloneSources: sources });
      sources = [...sources, sv];
    }
  } else {
    for (let i = 0; i < svs.length; i++) plan.push({ cloneSources });
  }
  const enc = new StreamEncoder(version, CHUNK, opts.bufferPool);
  const fill = opts.dataFill ?? sendDataFill(img, opts);
  const held: Uint8Array[] = [];
  try {
    for (const [i, sv] of svs.entries()) {
      // btrfs send without -e: a complete stream (header … END) per subvolume, back to back; with -e one
      // stream, its subvolumes one after another (the kernel's OMIT_STREAM_HEADER / OMIT_END_CMD)
      if (!opts.endOnce || i === 0) enc.header();
      opts.onSubvolume?.(sv);
      const { parent, cloneSources } = plan[i]!;
      const o = {
        version, compressedData: opts.compressedData ?? false, noData: opts.noData ?? false, cloneSources,
        dataRoom: (c: SendCommand, n: number) => enc.dataRoom(c, n), ...(fill ? { fill } : {}),
      };
      const send = parent ? new IncrementalSend(img.reader, sv, parent, o) : new FullSend(img.reader, sv, o);
      for await (const cmd of send.commands()) {
        enc.add(cmd);
        if (enc.full.length > 0) {
          if (!fill) {
            yield* enc.take();
            continue;
          }
          // a full buffer goes out once the data read into it behind the send is there, and not before the
          // next one is full: the other thread reads into the one while the send frames the next
          held.push(...enc.take());
          while (held.length > HELD) {
            await fill.settleThrough(held[0]!);
            yield held.shift()!;
          }
        }
      }
      if (!opts.endOnce || i === svs.length - 1) enc.add({ cmd: C.BTRFS_SEND_C_END });
    }
    await fill?.settle();
    yield* held;
    yield* enc.end();
  } finally {
    if (fill !== opts.dataFill) fill?.close();
  }
}

/**
 * Whether a send with these options reads its data behind it (dataFill below) where it can: a full
 * --compressed-data send. A caller giving a bufferPool makes it shared ({ shared: true }) for such a send.
 */
export function readsBehind(o: Pick<SendOptions, 'parent' | 'compressedData'>): boolean {
  return o.parent === undefined && o.compressedData === true;
}

/**
 * Data read into the output behind a send with these options (data-fill.ts), where that can be: a full
 * --compressed-data send (readsBehind), output buffers in shared memory (a BufferPool with an arena), an
 * image file the other thread can open, a second CPU for it. Not where extents are decoded on the reading
 * thread of extent-ahead.ts (protocol 1, or 2 without --compressed-data): three busy threads on two CPUs
 * took more CPU and wall than two (docs/performance.md, send10). Not for an incremental send: a few MB of
 * data do not pay for a thread.
 */
export function sendDataFill(img: BtrfsImage, opts: Pick<SendOptions, 'parent' | 'compressedData' | 'bufferPool' | 'fillThread'>): DataFill | undefined {
  const path = img.reader.src.path;
  const pool = opts.bufferPool;
  if (!readsBehind(opts) || !pool?.arena || path === undefined || nodeOs().availableParallelism() < 2) return undefined;
  return new DataFill({ path, arena: pool.arena, ...(opts.fillThread ? { thread: opts.fillThread } : {}) });
}

/**
 * The thread of a send with these options that reads data behind it, started now (data-fill.ts,
 * FillThread: a thread started at the send's first job was ready only 100-140 ms later); undefined for
 * other sends and on one CPU. Give it to sendSubvolumes as `fillThread`, and close it after.
 */
export function fillThread(o: Pick<SendOptions, 'parent' | 'compressedData'>): FillThread | undefined {
  return readsBehind(o) && nodeOs().availableParallelism() >= 2 && !NativeFill.available ? new FillThread() : undefined;
}

/** One subvolume's stream (header, commands, END): `sendSubvolumes(img, [path], opts)`. */
export function sendSubvolume(img: SendImage, path: string, opts: SendOptions = {}): AsyncGenerator<Uint8Array> {
  return sendSubvolumes(img, [path], opts);
}
