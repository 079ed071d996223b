import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DumpReceiver, dumpStream, dumpStreamBytes } from '../src/dump/index.js';
import { StreamError } from '../src/errors.js';
import * as C from '../src/stream/constants.js';
import { processStream } from '../src/stream/receiver.js';
import { encodeStreamHeader } from '../src/stream/writer.js';
import { crc32cRaw } from '../src/util/crc32c.js';
import { allCommands, concat, encodeAll, slicings } from './helpers/craft.js';
import { capturedStreams, STREAMS_DIR } from './helpers/streams.js';

/**
 * dump formats most commands straight from their bytes (src/dump/fast-lines.ts) and leaves the rest, and
 * every error, to decodeCommand + DumpReceiver. The reference here is that older path alone: the same
 * lines, and the same error (code, offset, command index, message) on any input.
 */
beforeAll(() => {
  process.env.TZ = 'UTC';
});

interface Outcome { out: string; error?: { code: string; offset?: number; commandIndex?: number; message: string } }

function outcome(lines: string[], e: unknown): Outcome {
  if (e === undefined) return { out: lines.join('') };
  if (!(e instanceof StreamError)) throw e;
  return { out: lines.join(''), error: { code: e.code, offset: e.offset, commandIndex: e.commandIndex, message: e.message } };
}

async function reference(chunks: Uint8Array[]): Promise<Outcome> {
  const lines: string[] = [];
  const r = new DumpReceiver((l) => lines.push(l));
  const e = await processStream(chunks, r, { reuseInput: true, transientAttrs: true, stopAfterFirstEnd: true }).then(() => undefined, (x: unknown) => x);
  return outcome(lines, e);
}

async function fast(chunks: Uint8Array[]): Promise<Outcome> {
  const lines: string[] = [];
  const e = await dumpStream(chunks, (l) => lines.push(l)).then(() => undefined, (x: unknown) => x);
  return outcome(lines, e);
}

async function expectSame(stream: Uint8Array, how = ''): Promise<Outcome> {
  const want = await reference([stream]);
  for (const [cut, chunks] of slicings(stream, false)) expect(await fast(chunks), `${how} ${cut}`).toEqual(want);
  return want;
}

/** A command from raw attributes (type, value), CRC'd: attributes the encoder would never write. */
function rawCommand(cmd: number, attrs: [number, Uint8Array][]): Uint8Array {
  const payload = concat(...attrs.map(([t, v]) => concat(le(t, 2), le(v.length, 2), v)));
  const head = concat(le(payload.length, 4), le(cmd, 2), le(0, 4));
  return concat(head.subarray(0, 6), le(crc32cRaw(payload, crc32cRaw(head)), 4), payload);
}

function le(v: number | bigint, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = BigInt.asUintN(8 * n, BigInt(v));
  for (let i = 0; i < n; i++, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
}

const str = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const u64 = (v: number | bigint) => le(v, 8);
const time = (sec: bigint) => concat(le(sec, 8), le(0, 4));

function stream(subvol: string, ...cmds: Uint8Array[]): Uint8Array {
  return concat(encodeStreamHeader(2),
    rawCommand(C.BTRFS_SEND_C_SUBVOL, [[C.BTRFS_SEND_A_PATH, str(subvol)], [C.BTRFS_SEND_A_UUID, new Uint8Array(16)], [C.BTRFS_SEND_A_CTRANSID, u64(5)]]),
    ...cmds, rawCommand(C.BTRFS_SEND_C_END, []));
}

const A = C;
const P: [number, Uint8Array] = [A.BTRFS_SEND_A_PATH, str('d/f')];
/** One valid attribute list per command the fast path formats. */
const BASE: [number, [number, Uint8Array][]][] = [
  [A.BTRFS_SEND_C_MKFILE, [P, [A.BTRFS_SEND_A_INO, u64(257)]]],
  [A.BTRFS_SEND_C_MKFIFO, [P, [A.BTRFS_SEND_A_INO, u64(258)], [A.BTRFS_SEND_A_RDEV, u64(0)], [A.BTRFS_SEND_A_MODE, u64(0o10644)]]],
  [A.BTRFS_SEND_C_MKDIR, [P, [A.BTRFS_SEND_A_INO, u64(259)]]],
  [A.BTRFS_SEND_C_MKSOCK, [P, [A.BTRFS_SEND_A_INO, u64(260)], [A.BTRFS_SEND_A_RDEV, u64(0)], [A.BTRFS_SEND_A_MODE, u64(0o140755)]]],
  [A.BTRFS_SEND_C_SYMLINK, [P, [A.BTRFS_SEND_A_INO, u64(261)], [A.BTRFS_SEND_A_PATH_LINK, str('../t a\x01/')]]],
  [A.BTRFS_SEND_C_LINK, [P, [A.BTRFS_SEND_A_PATH_LINK, str('x\\y/')]]],
  [A.BTRFS_SEND_C_RENAME, [P, [A.BTRFS_SEND_A_PATH_TO, str('e f/g/')]]],
  [A.BTRFS_SEND_C_UNLINK, [P]],
  [A.BTRFS_SEND_C_RMDIR, [P]],
  [A.BTRFS_SEND_C_SET_XATTR, [P, [A.BTRFS_SEND_A_XATTR_NAME, str('user.\xffa\0b')], [A.BTRFS_SEND_A_XATTR_DATA, str('v\x80\0w')]]],
  [A.BTRFS_SEND_C_REMOVE_XATTR, [P, [A.BTRFS_SEND_A_XATTR_NAME, str('user.k')]]],
  [A.BTRFS_SEND_C_WRITE, [P, [A.BTRFS_SEND_A_FILE_OFFSET, u64(4096)], [A.BTRFS_SEND_A_DATA, new Uint8Array(300).fill(9)]]],
  [A.BTRFS_SEND_C_TRUNCATE, [P, [A.BTRFS_SEND_A_SIZE, u64(12345)]]],
  [A.BTRFS_SEND_C_CHMOD, [P, [A.BTRFS_SEND_A_MODE, u64(0o104755)]]],
  [A.BTRFS_SEND_C_CHOWN, [P, [A.BTRFS_SEND_A_UID, u64(1000)], [A.BTRFS_SEND_A_GID, u64(2 ** 32 + 7)]]],
  [A.BTRFS_SEND_C_UTIMES, [P, [A.BTRFS_SEND_A_ATIME, time(-14182940n)], [A.BTRFS_SEND_A_MTIME, time(253402300800n)],
    [A.BTRFS_SEND_A_CTIME, time(1700000000n)], [A.BTRFS_SEND_A_OTIME, time(0n)]]],
  [A.BTRFS_SEND_C_UPDATE_EXTENT, [P, [A.BTRFS_SEND_A_FILE_OFFSET, u64(0)], [A.BTRFS_SEND_A_SIZE, u64(65536)]]],
  [A.BTRFS_SEND_C_FALLOCATE, [P, [A.BTRFS_SEND_A_FALLOCATE_MODE, le(0xfffffffe, 4)], [A.BTRFS_SEND_A_FILE_OFFSET, u64(1)], [A.BTRFS_SEND_A_SIZE, u64(2)]]],
  [A.BTRFS_SEND_C_FILEATTR, [P, [A.BTRFS_SEND_A_FILEATTR, u64(16)]]],
  [A.BTRFS_SEND_C_ENCODED_WRITE, [P, [A.BTRFS_SEND_A_FILE_OFFSET, u64(0)], [A.BTRFS_SEND_A_UNENCODED_FILE_LEN, u64(131072)],
    [A.BTRFS_SEND_A_UNENCODED_LEN, u64(131072)], [A.BTRFS_SEND_A_UNENCODED_OFFSET, u64(0)], [A.BTRFS_SEND_A_COMPRESSION, le(2, 4)],
    [A.BTRFS_SEND_A_DATA, new Uint8Array(200).fill(1)]]],
];

describe('dump fast path: the same lines and errors as decodeCommand + DumpReceiver', () => {
  it('captured streams and crafted streams of every command (v1-v3)', async () => {
    for (const f of capturedStreams()) {
      const want = await expectSame(new Uint8Array(readFileSync(join(STREAMS_DIR, f))), f);
      expect(want.error, f).toBeUndefined();
      expect(want.out.length, f).toBeGreaterThan(0);
    }
    for (const v of [1, 2, 3]) expect((await expectSame(encodeAll(v, allCommands(v)), `v${v}`)).error).toBeUndefined();
  });

  it('every fast command, valid and with each attribute missing, resized, at the limits of its values', async () => {
    let errors = 0;
    for (const [cmd, attrs] of BASE) {
      const variants: [string, [number, Uint8Array][]][] = [['valid', attrs]];
      for (let i = 0; i < attrs.length; i++) {
        const [t, v] = attrs[i]!;
        const without = attrs.filter((_, j) => j !== i);
        variants.push([`without ${t}`, without]);
        variants.push([`${t} one byte longer`, [...without, [t, concat(v, new Uint8Array(1))]]]);
        if (v.length === 8) {
          for (const x of [2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 1n]) variants.push([`${t}=${x}`, [...without, [t, u64(x)]]]);
        }
        if (v.length === 12) {
          for (const x of [-(2n ** 53n), -(2n ** 53n) - 1n, 2n ** 53n + 1n, -(2n ** 63n), 67768036191676800n, 67768036191676799n]) variants.push([`${t}=${x}`, [...without, [t, time(x)]]]);
        }
      }
      variants.push(['a repeated path', [...attrs, [A.BTRFS_SEND_A_PATH, str('other/')]]]);
      variants.push(['an attribute it does not define', [...attrs, [A.BTRFS_SEND_A_CLONE_OFFSET, u64(1)]]]);
      for (const [how, list] of variants) {
        const s = stream('vol', rawCommand(cmd, list));
        const want = await expectSame(s, `${C.sendCommandName(cmd)} ${how}`);
        if (want.error) errors++;
      }
    }
    // the variants must reach the error paths, or they would test only the happy one
    expect(errors).toBeGreaterThan(BASE.length * 2);
  });

  it('paths: subvolumes with a trailing slash, odd bytes, and lengths around PATH_MAX', async () => {
    const long = (n: number) => str('p'.repeat(n));
    for (const subvol of ['vol', 'vol/', 'a b\\c\x7f\xe9', 'x'.repeat(300)]) {
      const sv = 2 + subvol.length; // "./" + name
      for (const n of [0, 1, 4096 - sv - 3, 4096 - sv - 2, 4096 - sv - 1]) {
        for (const [cmd, attrs] of BASE) {
          const list = attrs.map(([t, v]): [number, Uint8Array] => [t, t === A.BTRFS_SEND_A_PATH || t === A.BTRFS_SEND_A_PATH_TO ? long(n) : v]);
          await expectSame(stream(subvol, rawCommand(cmd, list)), `${subvol.length} ${n} ${C.sendCommandName(cmd)}`);
        }
      }
      await expectSame(stream(subvol, rawCommand(A.BTRFS_SEND_C_UNLINK, [[A.BTRFS_SEND_A_PATH, str('a/\0b')]])), 'NUL in a path');
    }
  });

  it('the failure corpus', async () => {
    const dir = join(__dirname, 'failures');
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.stream'))) await expectSame(new Uint8Array(readFileSync(join(dir, f))), f);
  });

  it('mutated streams (bits flipped, bytes cut, inserted, deleted)', async () => {
    const seeds = [encodeAll(1, allCommands(1)), encodeAll(2, allCommands(2)), stream('vol', ...BASE.map(([c, a]) => rawCommand(c, a)))];
    let s = 0x1234567;
    const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
    let differentErrors = 0;
    for (const seed of seeds) {
      for (let i = 0; i < 150; i++) {
        const m = seed.slice();
        const pos = Math.floor(r() * m.length);
        const kind = i % 3;
        let bytes = m;
        if (kind === 0) for (let k = 0; k < 3; k++) m[Math.floor(r() * m.length)]! ^= 1 << Math.floor(r() * 8);
        else if (kind === 1) bytes = m.subarray(0, pos);
        else bytes = concat(m.subarray(0, pos), m.subarray(pos + 1 + Math.floor(r() * 16)));
        const want = await reference([bytes]);
        expect(await fast([bytes]), `${i}`).toEqual(want);
        if (want.error) differentErrors++;
      }
    }
    expect(differentErrors).toBeGreaterThan(100);
  });

  it('dumpStreamBytes gives the same bytes, whole lines per piece, and the lines before an error', async () => {
    const s = encodeAll(2, allCommands(2));
    const want = await reference([s]);
    const pieces: Buffer[] = [];
    await dumpStreamBytes([s], (b) => { pieces.push(Buffer.from(b)); });
    expect(Buffer.concat(pieces).toString('latin1')).toBe(want.out);
    for (const p of pieces) expect(p[p.length - 1]).toBe(0x0a);
    const bad = concat(s.subarray(0, s.length - 10), rawCommand(A.BTRFS_SEND_C_UNLINK, []));
    const badWant = await reference([bad]);
    const got: Buffer[] = [];
    const e = await dumpStreamBytes([bad], (b) => { got.push(Buffer.from(b)); }).then(() => undefined, (x: unknown) => x);
    expect(outcome([Buffer.concat(got).toString('latin1')], e)).toEqual(badWant);
    expect(badWant.error?.code).toBe('MISSING_ATTRIBUTE');
  });
});
