import type { Receiver } from '../stream/receiver.js';
import type * as T from '../stream/types.js';
import { formatUuid } from '../util/uuid.js';

/**
 * The lines `btrfs receive` prints on stderr, at its verbosity levels (btrfs-progs cmds/receive.c):
 * 1 (default) "At subvol"/"At snapshot" (progs prints the latter on stdout, so does `write`'s caller when
 * told `toStdout`); 2 (`-v`) the subvolume's uuids, WRITE and CLONE, and the
 * received-uuid ioctl; 3 (`-vv`) every other command. Paths are the stream's raw bytes, as progs prints
 * them; lines are binary strings (one char per byte) so non-UTF-8 names come out unchanged.
 */
export type TraceLevel = 0 | 1 | 2 | 3;

const b = (p: Uint8Array): string => Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString('latin1');

/** printf's %.*s: the bytes up to the first NUL. */
const cstr = (p: Uint8Array): string => {
  const nul = p.indexOf(0);
  return b(nul < 0 ? p : p.subarray(0, nul));
};

type Line = [level: TraceLevel, text: string];

function lines(m: keyof Receiver, c: T.SendCommand): Line[] {
  switch (m) {
    case 'subvol': {
      const s = c as T.SubvolCmd;
      return [[1, `At subvol ${b(s.path)}`], [2, `receiving subvol ${b(s.path)} uuid=${formatUuid(s.uuid)}, stransid=${s.ctransid}`]];
    }
    case 'snapshot': {
      const s = c as T.SnapshotCmd;
      return [[1, `At snapshot ${b(s.path)}`], [2, `receiving snapshot ${b(s.path)} uuid=${formatUuid(s.uuid)}, ctransid=${s.ctransid} ` +
        `parent_uuid=${formatUuid(s.cloneUuid)}, parent_ctransid=${s.cloneCtransid}`]];
    }
    case 'mkfile': case 'mkdir': case 'mkfifo': case 'mksock':
      return [[3, `${m} ${b((c as T.CreateCmd).path)}`]];
    case 'mknod': {
      const n = c as T.CreateCmd;
      return [[3, `mknod ${b(n.path)} mode=${n.mode ?? 0n}, dev=${n.rdev ?? 0n}`]];
    }
    case 'symlink': {
      const s = c as T.SymlinkCmd;
      return [[3, `symlink ${b(s.path)} -> ${b(s.pathLink)}`]];
    }
    case 'rename': {
      const r = c as T.RenameCmd;
      return [[3, `rename ${b(r.path)} -> ${b(r.pathTo)}`]];
    }
    case 'link': {
      const l = c as T.LinkCmd;
      return [[3, `link ${b(l.path)} -> ${b(l.pathLink)}`]];
    }
    case 'unlink': case 'rmdir':
      return [[3, `${m} ${b((c as T.UnlinkCmd).path)}`]];
    case 'write': {
      const w = c as T.WriteCmd;
      return [[2, `write ${b(w.path)} - offset=${w.fileOffset} length=${w.data.length}`]];
    }
    case 'clone': {
      const k = c as T.CloneCmd;
      return [[2, `clone ${b(k.path)} - source=${b(k.clonePath)} source offset=${k.cloneOffset} offset=${k.fileOffset} length=${k.cloneLen}`]];
    }
    case 'setXattr': {
      const x = c as T.SetXattrCmd;
      return [[3, `set_xattr ${b(x.path)} - name=${cstr(x.name)} data_len=${x.data.length} data=${cstr(x.data)}`]];
    }
    case 'removeXattr': {
      const x = c as T.RemoveXattrCmd;
      return [[3, `remove_xattr ${b(x.path)} - name=${cstr(x.name)}`]];
    }
    case 'truncate': {
      const t = c as T.TruncateCmd;
      return [[3, `truncate ${b(t.path)} size=${t.size}`]];
    }
    case 'chmod': {
      const t = c as T.ChmodCmd;
      return [[3, `chmod ${b(t.path)} - mode=0${(t.mode & 0xffffffffn).toString(8)}`]];
    }
    case 'chown': {
      const t = c as T.ChownCmd;
      return [[3, `chown ${b(t.path)} - uid=${t.uid}, gid=${t.gid}`]];
    }
    case 'utimes':
      return [[3, `utimes ${b((c as T.UtimesCmd).path)}`]];
    case 'updateExtent': {
      const u = c as T.UpdateExtentCmd;
      return [[3, `update_extent ${b(u.path)}: offset=${u.fileOffset}, len=${u.size}`]];
    }
    case 'encodedWrite': {
      const e = c as T.EncodedWriteCmd;
      return [[3, `encoded_write ${b(e.path)} - offset=${e.fileOffset}, len=${e.data.length}, unencoded_offset=${e.unencodedOffset}, ` +
        `unencoded_file_len=${e.unencodedFileLen}, unencoded_len=${e.unencodedLen}, compression=${e.compression ?? 0}, encryption=${e.encryption ?? 0}`]];
    }
    case 'fallocate': {
      const f = c as T.FallocateCmd;
      return [[3, `fallocate ${b(f.path)} - offset=${f.fileOffset}, len=${f.size}, mode=${f.mode}`]];
    }
    default:
      return [];
  }
}

/**
 * `inner` with the lines of `level` and below written before each command is applied (as progs prints
 * them before its syscall), and the received-uuid line at each END.
 */
export function traceReceiver(inner: Receiver, level: TraceLevel, write: (line: string, toStdout?: boolean) => void): Receiver {
  let current: { uuid: Uint8Array; stransid: bigint } | undefined;
  const out: Receiver = Object.create(inner) as Receiver;
  for (const m of Object.keys(FIRST_LEVEL) as (keyof Receiver)[]) {
    const f = (inner[m] as ((...a: unknown[]) => unknown) | undefined)?.bind(inner);
    if (!f) continue;
    // A command none of whose lines shows at this level goes straight to `inner`: formatting its lines only
    // to drop them was 3.5% of a default-level receive of 50k small files. Bound, so that `this` stays inner.
    const passThrough = FIRST_LEVEL[m] > level && m !== 'end';
    (out as unknown as Record<string, unknown>)[m] = passThrough ? f : (c: T.SendCommand, ...rest: unknown[]) => {
      for (const [l, text] of lines(m, c)) if (l <= level) write(text + '\n', m === 'snapshot' && l === 1);
      if (m === 'subvol' || m === 'snapshot') {
        const s = c as T.SubvolCmd;
        current = { uuid: s.uuid, stransid: s.ctransid };
      } else if (m === 'end' && current && level >= 2) {
        write(`BTRFS_IOC_SET_RECEIVED_SUBVOL uuid=${formatUuid(current.uuid)}, stransid=${current.stransid}\n`);
      }
      return f(c, ...rest);
    };
  }
  return out;
}

/**
 * Every callback of Receiver (a record so the compiler notices a new one), with the lowest level at which
 * `lines` gives it one (4: never; `end`'s received-uuid line is written by the wrapper itself).
 */
const FIRST_LEVEL: Record<keyof Receiver, TraceLevel | 4> = {
  streamStart: 4, subvol: 1, snapshot: 1, mkfile: 3, mkdir: 3, mknod: 3, mkfifo: 3, mksock: 3,
  symlink: 3, rename: 3, link: 3, unlink: 3, rmdir: 3, setXattr: 3, removeXattr: 3, write: 2,
  clone: 2, truncate: 3, chmod: 3, chown: 3, utimes: 3, updateExtent: 3, fallocate: 3, fileattr: 4,
  encodedWrite: 3, enableVerity: 4, end: 2, unknown: 4,
};
