import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseStream } from '../src/stream/parser.js';
import * as C from '../src/stream/constants.js';
import type { EncodedWriteCmd, KnownCommand, SendCommand } from '../src/stream/types.js';
import { commandSize, encodeCommand, StreamEncoder } from '../src/stream/writer.js';
import { sentSize } from '../src/stream/writer-sent.js';
import { crc32cRaw } from '../src/util/crc32c.js';
import { collect, STREAMS_DIR } from './helpers/streams.js';

/**
 * StreamEncoder (the send path's encoder: commands straight into large buffers) must give the kernel's
 * bytes: a captured kernel stream, parsed and re-encoded through it with buffers far smaller than some
 * commands, comes out identical — and no buffer already handed out changes afterwards (write-behind
 * consumers keep them).
 */
describe('StreamEncoder', () => {
  for (const [file, chunk] of [['full-v1.stream', 300], ['zstd-v2.stream', 4096], ['full-v2.stream', 1 << 20]] as const) {
    it(`re-encodes ${file} byte for byte (buffers of ${chunk} bytes)`, async () => {
      const buf = new Uint8Array(readFileSync(join(STREAMS_DIR, file)));
      const items = await collect(parseStream([buf]));
      const out: Uint8Array[] = [];
      const copies: Uint8Array[] = [];
      let enc: StreamEncoder | undefined;
      for (const it of items) {
        if (it.kind === 'header') {
          enc ??= new StreamEncoder(it.version, chunk);
          enc.header();
          continue;
        }
        // the parser's attribute order is dropped: the encoder's own (the kernel's) order must match
        enc!.add({ ...it.command, meta: { ...it.command.meta, attrOrder: [] } });
        for (const b of enc!.take()) {
          out.push(b);
          copies.push(b.slice());
        }
      }
      for (const b of enc!.end()) {
        out.push(b);
        copies.push(b.slice());
      }
      expect(out.length).toBeGreaterThan(chunk < 4096 ? 100 : 0);
      expect(out.every((b, i) => Buffer.compare(b, copies[i]!) === 0)).toBe(true);
      expect(Buffer.compare(Buffer.concat(out), buf)).toBe(0);
    });
  }

  // a send's own commands have no parser meta: the common kinds go through writer-sent.ts instead of the table walk
  for (const file of ['full-v1.stream', 'zstd-v2.stream', 'incr-v1.stream']) {
    it(`re-encodes ${file} byte for byte from commands without meta (writer-sent.ts where it encodes them)`, async () => {
      const buf = new Uint8Array(readFileSync(join(STREAMS_DIR, file)));
      const items = await collect(parseStream([buf]));
      let enc: StreamEncoder | undefined;
      let version = 1;
      const out: Uint8Array[] = [];
      const fast = new Set<number>();
      for (const it of items) {
        if (it.kind === 'header') {
          version = it.version;
          enc ??= new StreamEncoder(it.version, 1 << 20);
          enc.header();
          continue;
        }
        const { meta: _meta, ...c } = it.command as SendCommand & { meta: unknown };
        const n = sentSize(c, version);
        if (n >= 0) {
          fast.add(c.cmd);
          expect(n).toBe(commandSize(c, version));
        }
        enc!.add(c);
        out.push(...enc!.take());
      }
      out.push(...enc!.end());
      // WRITE, UTIMES, CHOWN, CHMOD, MKFILE, RENAME, ... of a kernel stream
      expect(fast.size).toBeGreaterThan(5);
      expect(Buffer.compare(Buffer.concat(out), buf)).toBe(0);
    });
  }

  it('writer-sent.ts: the bytes of the table walk for every kind it encodes, optional attributes, a known data CRC, protocols 1 and 2', () => {
    const te = new TextEncoder();
    let seed = 7;
    const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => rnd(256));
    const big = (): bigint => (BigInt(rnd(1 << 30)) << 34n) | BigInt(rnd(1 << 30));
    const time = () => ({ sec: big(), nsec: rnd(1e9) });
    const cases = (): KnownCommand[] => {
      const path = te.encode(`d${rnd(1000)}/`.repeat(1 + rnd(20)) + 'f');
      const data = bytes([0, 1, 4095, 4096, 8192, 12288 + rnd(4096)][rnd(6)]!);
      return [
        { cmd: C.BTRFS_SEND_C_WRITE, path, fileOffset: big(), data },
        { cmd: C.BTRFS_SEND_C_WRITE, path, fileOffset: big(), data, dataCrc: crc32cRaw(data) },
        { cmd: C.BTRFS_SEND_C_UPDATE_EXTENT, path, fileOffset: big(), size: big() },
        { cmd: C.BTRFS_SEND_C_TRUNCATE, path, size: -1n },
        { cmd: C.BTRFS_SEND_C_CHMOD, path, mode: BigInt(rnd(0o7777)) },
        { cmd: C.BTRFS_SEND_C_CHOWN, path, uid: big(), gid: big() },
        { cmd: C.BTRFS_SEND_C_UTIMES, path, atime: time(), mtime: time(), ctime: time() },
        { cmd: C.BTRFS_SEND_C_UTIMES, path, atime: time(), mtime: time(), ctime: time(), otime: time() },
        { cmd: C.BTRFS_SEND_C_UNLINK, path },
        { cmd: C.BTRFS_SEND_C_RMDIR, path },
        { cmd: C.BTRFS_SEND_C_MKFILE, path, ino: big() },
        { cmd: C.BTRFS_SEND_C_MKDIR, path, ino: big() },
        { cmd: C.BTRFS_SEND_C_MKFILE, path, ino: big(), mode: 0o100644n }, // table walk: mode, rdev
        { cmd: C.BTRFS_SEND_C_RENAME, path, pathTo: te.encode(`o${rnd(1e6)}-1-0`) },
        { cmd: C.BTRFS_SEND_C_LINK, path, pathLink: path.slice(1) },
        { cmd: C.BTRFS_SEND_C_SET_XATTR, path, name: te.encode('user.x'), data: bytes(rnd(300)) },
        { cmd: C.BTRFS_SEND_C_REMOVE_XATTR, path, name: te.encode('security.capability') },
      ];
    };
    for (const version of [1, 2]) {
      for (let round = 0; round < 20; round++) {
        for (const c of cases()) {
          const enc = new StreamEncoder(version, 1 << 16);
          enc.add(c);
          expect(Buffer.concat(enc.end()).equals(encodeCommand(c, version)), `${C.sendCommandName(c.cmd)} v${version}`).toBe(true);
          if (c.cmd === C.BTRFS_SEND_C_MKFILE && c.mode !== undefined) expect(sentSize(c, version)).toBe(-1);
          else expect(sentSize(c, version)).toBe(commandSize(c, version));
        }
      }
    }
    // an attribute too long for its TLV: the table walk's error, by name
    const long = { cmd: C.BTRFS_SEND_C_RENAME, path: te.encode('a'), pathTo: new Uint8Array(70000) } as const;
    expect(sentSize(long, 1)).toBe(-1);
    expect(() => new StreamEncoder(1).add(long)).toThrow(/PATH_TO of 70000 bytes/);
  });

  it('dataRoom: data read where the encoder puts it gives the same bytes, across buffer ends and when the command grows after', () => {
    const cmd = (n: number, data: Uint8Array): EncodedWriteCmd => ({
      cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: new TextEncoder().encode(`dir/file${n}`), fileOffset: BigInt(n) * 4096n,
      unencodedFileLen: 131072n, unencodedLen: 131072n, unencodedOffset: 0n, compression: 1, data,
    });
    const payload = (n: number, len: number): Uint8Array => Uint8Array.from({ length: len }, (_, i) => (i * 31 + n) & 255);
    for (const version of [1, 2]) {
      const enc = new StreamEncoder(version, 5000);
      const want: Uint8Array[] = [];
      for (let n = 0; n < 40; n++) {
        const len = 100 + ((n * 977) % 4000);
        const c = cmd(n, new Uint8Array(0));
        // the kernel's order: every attribute but one set before the room is taken
        c.encryption = 0;
        const grows = n % 5 === 4;
        if (grows) delete c.encryption;
        const room = enc.dataRoom(c, len)!;
        expect(room.length).toBe(len);
        room.set(payload(n, len));
        c.data = room;
        if (grows) c.encryption = 0;
        enc.add(c);
        want.push(encodeCommand({ ...cmd(n, payload(n, len)), encryption: 0 }, version));
      }
      const got = Buffer.concat(enc.end());
      expect(got.equals(Buffer.concat(want))).toBe(true);
    }
  });
});
