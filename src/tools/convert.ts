import { compressExtent, diskToEncoded, initCodecs, type BtrfsCompressType } from '../compress/index.js';
import { StreamError } from '../errors.js';
import * as C from '../stream/constants.js';
import { parseStream, type ParseOptions } from '../stream/parser.js';
import type * as T from '../stream/types.js';
import { encodeCommand, encodeStreamHeader } from '../stream/writer.js';
import { sameBytes } from '../util/bytes.js';
import { SizeTracker } from './convert-sizes.js';
import { encodedFileBytes } from './encoded.js';
import { checkSubvolName, showPath } from './paths.js';

/**
 * `convert`: rewrites a stream between protocol versions, optionally compressing its data, renaming the
 * subvolume or re-parenting an incremental. The output is what a kernel of the target protocol could have
 * sent for the same tree: protocol 1 gets WRITEs of at most 48 KiB (BTRFS_SEND_READ_SIZE of v1 kernels)
 * and no v2-only commands; protocol 2 with compression gets ENCODED_WRITEs built by the kernel's rules.
 */

export interface ConvertOptions extends ParseOptions {
  /** Output protocol (default: the input's). */
  proto?: 1 | 2;
  /** Compress plain WRITE data into ENCODED_WRITEs (protocol 2 output only). */
  compress?: { type: BtrfsCompressType; level?: number };
  /** New SNAPSHOT clone_uuid (16 bytes); CLONEs from the old parent follow it. */
  parentUuid?: Uint8Array;
  /** New SUBVOL/SNAPSHOT path. */
  subvolName?: Uint8Array;
  /** Sector size the compressed extents are cut for (default 4096). */
  sectorsize?: number;
  /** Called for every input command the target protocol cannot carry and that is left out. */
  onDrop?: (what: string, c: T.SendCommand) => void;
}

export interface ConvertStats {
  commandsIn: number;
  commandsOut: number;
  encodedOut: number;
  dropped: number;
}

/** v1 kernels read file data in 48 KiB pieces; a v1 receiver must accept any WRITE that size. */
export const V1_MAX_WRITE = 48 * 1024;
const V2_MAX_WRITE = 128 * 1024;
const MAX_EXTENT = 128 * 1024;

interface Run { path: Uint8Array; start: bigint; parts: Uint8Array[]; len: number }


/** Yields the converted stream's bytes, one encoded command (or header) per chunk. */
export async function* convertStream(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: ConvertOptions = {},
  stats: ConvertStats = { commandsIn: 0, commandsOut: 0, encodedOut: 0, dropped: 0 },
): AsyncGenerator<Uint8Array> {
  await initCodecs();
  const ss = opts.sectorsize ?? 4096;
  if (opts.subvolName) {
    const bad = checkSubvolName(opts.subvolName);
    if (bad) throw new StreamError('CONVERT_BAD_NAME', `subvolume name ${showPath(opts.subvolName)}: ${bad.message}`);
  }
  if (opts.parentUuid && opts.parentUuid.length !== 16) throw new StreamError('CONVERT_BAD_UUID', 'parent uuid must be 16 bytes');
  const sizes = new SizeTracker();
  let out = 0;
  let subvols = 0;
  let oldParent: Uint8Array | undefined;
  let run: Run | undefined;

  const emit = (c: T.SendCommand): Uint8Array => {
    stats.commandsOut++;
    if (c.cmd === C.BTRFS_SEND_C_ENCODED_WRITE) stats.encodedOut++;
    return encodeCommand(c, out);
  };
  const drop = (what: string, c: T.SendCommand) => {
    stats.dropped++;
    opts.onDrop?.(what, c);
  };
  /** Plain WRITEs of `data` at `off`, cut to the target protocol's write size. */
  function* writes(path: Uint8Array, off: bigint, data: Uint8Array): Generator<Uint8Array> {
    const max = out === 1 ? V1_MAX_WRITE : V2_MAX_WRITE;
    for (let i = 0; i < data.length; i += max) {
      yield emit({ cmd: C.BTRFS_SEND_C_WRITE, path, fileOffset: off + BigInt(i), data: data.subarray(i, i + max) });
    }
  }
  /** One extent's worth of data: encoded when aligned and compressible, as the kernel decides. */
  function* extent(path: Uint8Array, off: bigint, data: Uint8Array, atEof: boolean): Generator<Uint8Array> {
    const mis = Number(off % BigInt(ss));
    if (mis !== 0) {
      // an unaligned head cannot be encoded: send it plain up to the next sector boundary
      const head = Math.min(ss - mis, data.length);
      yield* writes(path, off, data.subarray(0, head));
      if (head < data.length) yield* extent(path, off + BigInt(head), data.subarray(head), atEof);
      return;
    }
    // an unaligned tail may be encoded only where it ends the file, as for the kernel's encoded writes
    const encLen = atEof ? data.length : Math.floor(data.length / ss) * ss;
    const comp = encLen > 0 ? compressExtent(opts.compress!.type, data.subarray(0, encLen), ss, opts.compress!.level) : null;
    if (!comp) {
      yield* writes(path, off, data);
      return;
    }
    yield emit({
      cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path, fileOffset: off, unencodedFileLen: BigInt(encLen),
      unencodedLen: BigInt(Math.ceil(encLen / ss) * ss), unencodedOffset: 0n,
      compression: diskToEncoded(opts.compress!.type, ss), data: comp,
    });
    if (encLen < data.length) yield* writes(path, off + BigInt(encLen), data.subarray(encLen));
  }
  function* flush(): Generator<Uint8Array> {
    const r = run;
    run = undefined;
    if (!r) return;
    const data = r.parts.length === 1 ? r.parts[0]! : Buffer.concat(r.parts);
    const end = r.start + BigInt(r.len);
    const size = sizes.get(r.path);
    yield* extent(r.path, r.start, data, size !== undefined && end >= size);
  }

  for await (const item of parseStream(input, opts)) {
    if (item.kind === 'header') {
      yield* flush();
      out = opts.proto ?? item.version;
      if (opts.compress && out < 2) throw new StreamError('CONVERT_COMPRESS_V1', 'compressed output needs protocol 2');
      yield encodeStreamHeader(out);
      continue;
    }
    let c: T.SendCommand = item.command;
    stats.commandsIn++;
    // consecutive WRITEs of one file merge into extents of up to 128 KiB, cut at extent-size boundaries
    if (opts.compress && c.cmd === C.BTRFS_SEND_C_WRITE) {
      const w = c as T.WriteCmd;
      if (run && !(sameBytes(run.path, w.path) && run.start + BigInt(run.len) === w.fileOffset)) yield* flush();
      sizes.apply(w);
      let data = w.data;
      while (data.length > 0) {
        if (!run) run = { path: Uint8Array.from(w.path), start: w.fileOffset + BigInt(w.data.length - data.length), parts: [], len: 0 };
        const take = Math.min(data.length, MAX_EXTENT - run.len);
        // the parser's data is a view into its buffer: copy what is kept past this command
        run.parts.push(data.slice(0, take));
        run.len += take;
        data = data.subarray(take);
        if (run.len === MAX_EXTENT) yield* flush();
      }
      continue;
    }
    yield* flush();
    const fallocate = c.cmd === C.BTRFS_SEND_C_FALLOCATE ? c as T.FallocateCmd : undefined;
    const sizeBefore = fallocate ? sizes.get(fallocate.path) : undefined;
    sizes.apply(c);

    switch (c.cmd) {
      case C.BTRFS_SEND_C_SUBVOL:
      case C.BTRFS_SEND_C_SNAPSHOT: {
        if (opts.subvolName && ++subvols > 1) throw new StreamError('CONVERT_MULTI', '--subvol-name needs a stream with a single subvolume');
        const s = { ...c } as T.SubvolCmd | T.SnapshotCmd;
        if (opts.subvolName) s.path = opts.subvolName;
        if (opts.parentUuid) {
          if (s.cmd !== C.BTRFS_SEND_C_SNAPSHOT) throw new StreamError('CONVERT_NOT_INCREMENTAL', '--parent-uuid needs an incremental stream (SNAPSHOT), this one starts with SUBVOL');
          oldParent = s.cloneUuid;
          s.cloneUuid = opts.parentUuid;
        }
        c = s;
        break;
      }
      case C.BTRFS_SEND_C_CLONE:
        if (oldParent && sameBytes((c as T.CloneCmd).cloneUuid, oldParent)) c = { ...(c as T.CloneCmd), cloneUuid: opts.parentUuid! };
        break;
      case C.BTRFS_SEND_C_WRITE:
        if (out === 1 && (c as T.WriteCmd).data.length > V1_MAX_WRITE) {
          const w = c as T.WriteCmd;
          yield* writes(w.path, w.fileOffset, w.data);
          continue;
        }
        break;
      case C.BTRFS_SEND_C_UTIMES:
        if (out === 1 && (c as T.UtimesCmd).otime) {
          const u = { ...(c as T.UtimesCmd) };
          delete u.otime;
          c = u;
        }
        break;
      case C.BTRFS_SEND_C_ENCODED_WRITE:
        if (out === 1) {
          const e = c as T.EncodedWriteCmd;
          yield* writes(e.path, e.fileOffset, encodedFileBytes(e, ss));
          continue;
        }
        break;
      case C.BTRFS_SEND_C_FALLOCATE:
        if (out === 1) {
          yield* fallocateV1(fallocate!, sizeBefore);
          continue;
        }
        break;
      case C.BTRFS_SEND_C_FILEATTR:
        // btrfs receive ignores FILEATTR; protocol 1 cannot carry it at all
        if (out === 1) {
          drop('FILEATTR', c);
          continue;
        }
        break;
      case C.BTRFS_SEND_C_ENABLE_VERITY:
        if (out < 3) {
          drop('ENABLE_VERITY', c);
          continue;
        }
        break;
    }
    yield emit(c);
  }
  yield* flush();

  /**
   * FALLOCATE in protocol 1 terms, as a v1 kernel expresses the same content: preallocation changes no
   * bytes (dropped), an allocation past EOF is a TRUNCATE up (zeros), a punched hole is WRITEs of zeros
   * up to EOF (what v1 kernels send for holes). Where the file's size is not known, there is no exact
   * translation and the conversion fails rather than guessing.
   */
  function* fallocateV1(f: T.FallocateCmd, size: bigint | undefined): Generator<Uint8Array> {
    const end = f.fileOffset + f.size;
    if (f.mode & C.FALLOC_FL_PUNCH_HOLE) {
      if (size === undefined) throw unknownSize(f);
      if (f.fileOffset < size) {
        const n = (end < size ? end : size) - f.fileOffset;
        for (let o = 0n; o < n; o += BigInt(V1_MAX_WRITE)) {
          const len = Number(n - o < BigInt(V1_MAX_WRITE) ? n - o : BigInt(V1_MAX_WRITE));
          yield emit({ cmd: C.BTRFS_SEND_C_WRITE, path: f.path, fileOffset: f.fileOffset + o, data: new Uint8Array(len) });
        }
      }
      return;
    }
    if (f.mode & C.FALLOC_FL_KEEP_SIZE) {
      drop('FALLOCATE (preallocation only)', f);
      return;
    }
    if (size === undefined) throw unknownSize(f);
    if (end > size) yield emit({ cmd: C.BTRFS_SEND_C_TRUNCATE, path: f.path, size: end });
    else drop('FALLOCATE (inside the file)', f);
  }
}

function unknownSize(f: T.FallocateCmd): StreamError {
  return new StreamError('CONVERT_FALLOCATE', `FALLOCATE mode ${f.mode} on ${showPath(f.path)} (a file whose size this stream does not establish) has no protocol 1 equivalent`, {
    ...(f.meta ? { offset: f.meta.offset, commandIndex: f.meta.index } : {}), command: 'BTRFS_SEND_C_FALLOCATE',
  });
}
