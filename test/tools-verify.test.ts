import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compressExtent, initCodecs, BTRFS_COMPRESS_ZSTD } from '../src/compress/index.js';
import * as C from '../src/stream/constants.js';
import { parseStream } from '../src/stream/parser.js';
import type { EncodedWriteCmd, SendCommand } from '../src/stream/types.js';
import { encodeCommand } from '../src/stream/writer.js';
import { verifyStream } from '../src/tools/verify.js';
import { b, concat, encodeAll, uuid } from './helpers/craft.js';
import { capturedStreams, STREAMS_DIR } from './helpers/streams.js';

/**
 * verify: every kernel stream is clean and its summary agrees with `btrfs receive --dump` (the stored
 * dumps); damaged or hostile streams are reported with the offset, command and path of each problem.
 */

const DUMP_WORDS = new Set(['subvol', 'snapshot', 'mkfile', 'mkdir', 'mknod', 'mkfifo', 'mksock', 'symlink', 'rename', 'link',
  'unlink', 'rmdir', 'set_xattr', 'remove_xattr', 'write', 'clone', 'truncate', 'chmod', 'chown', 'utimes', 'update_extent',
  'fallocate', 'fileattr', 'encoded_write', 'enable_verity']);
const read = (f: string) => new Uint8Array(readFileSync(join(STREAMS_DIR, f)));

describe('captured streams verify clean and summarize like the dumps', () => {
  for (const f of capturedStreams()) {
    it(f, async () => {
      const r = await verifyStream([read(f)]);
      expect(r.problems).toEqual([]);
      expect(r.ok).toBe(true);
      const name = f.replace(/\.stream$/, '');
      const dump = readFileSync(join(STREAMS_DIR, `${name}.dump`), 'latin1');
      // the dump shows the first stream only (btrfs-progs stops at the first END)
      const dumped = f.startsWith('multi-v1') ? r.subvolumes.slice(0, 1) : r.subvolumes;
      const heads = [...dump.matchAll(/^(subvol|snapshot) +\.\/(\S+) +uuid=(\S+) transid=(\d+)(?: parent_uuid=(\S+) parent_transid=(\d+))?/gm)];
      expect(heads.length).toBe(dumped.length);
      heads.forEach((m, i) => {
        const s = dumped[i]!;
        expect([s.kind, s.name, s.uuid, s.ctransid, s.parentUuid, s.parentCtransid]).toEqual([m[1], m[2], m[3], m[4], m[5] ?? null, m[6] ?? null]);
      });
      // command counts and data bytes against the dump's own lines
      const counts: Record<string, number> = {};
      let write = 0;
      let encoded = 0;
      let encodedFile = 0;
      for (const line of dump.split('\n')) {
        const word = /^([a-z_]+) +\.\//.exec(line)?.[1];
        // set_xattr values and odd names can hold newlines: count only lines that start a command
        if (!word || !DUMP_WORDS.has(word)) continue;
        counts[word.toUpperCase()] = (counts[word.toUpperCase()] ?? 0) + 1;
        if (word === 'write') write += Number(/ len=(\d+)/.exec(line)![1]);
        if (word === 'encoded_write') {
          encoded += Number(/ len=(\d+)/.exec(line)![1]);
          encodedFile += Number(/unencoded_file_len=(\d+)/.exec(line)![1]);
        }
      }
      const mine: Record<string, number> = {};
      for (const s of dumped) for (const [k, v] of Object.entries(s.commands)) if (k !== 'END') mine[k] = (mine[k] ?? 0) + v;
      expect(mine).toEqual(counts);
      expect(dumped.reduce((n, s) => n + s.data.write, 0)).toBe(write);
      expect(dumped.reduce((n, s) => n + s.data.encoded, 0)).toBe(encoded);
      expect(dumped.reduce((n, s) => n + s.data.encodedFile, 0)).toBe(encodedFile);
      if (name.match(/^(zlib|lzo|zstd)-v2$/)) expect(Object.keys(r.subvolumes[0]!.codecs)).toEqual([name.startsWith('lzo') ? 'lzo-4k' : name.slice(0, name.indexOf('-'))]);
    });
  }
});

/** The bytes of `file` with its `n`th ENCODED_WRITE replaced by `edit(cmd)`, CRC recomputed. */
async function editEncoded(file: string, n: number, edit: (c: EncodedWriteCmd) => EncodedWriteCmd): Promise<{ bytes: Uint8Array; offset: number; path: string }> {
  const buf = read(file);
  let seen = 0;
  for await (const it of parseStream([buf])) {
    if (it.kind !== 'command' || it.command.cmd !== C.BTRFS_SEND_C_ENCODED_WRITE) continue;
    if (seen++ !== n) continue;
    const c = it.command as EncodedWriteCmd & { meta: NonNullable<EncodedWriteCmd['meta']> };
    const end = c.meta.offset + C.BTRFS_CMD_HEADER_SIZE + c.meta.len;
    const replaced = encodeCommand(edit({ ...c, data: c.data.slice() }), 2);
    return { bytes: concat(buf.subarray(0, c.meta.offset), replaced, buf.subarray(end)), offset: c.meta.offset, path: Buffer.from(c.path).toString('latin1') };
  }
  throw new Error('no such encoded write');
}

describe('problems are found and located', () => {
  it('a flipped byte: CRC mismatch at the command offset, reported not thrown', async () => {
    const orig = read('full-v1.stream');
    let start = -1;
    for await (const it of parseStream([orig])) {
      if (it.kind === 'command' && it.command.meta.offset <= 5000) start = it.command.meta.offset;
    }
    const buf = orig.slice();
    buf[5000] ^= 0x40;
    const r = await verifyStream([buf]);
    expect(r.ok).toBe(false);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]!.kind).toBe('stream');
    expect(r.problems[0]!.message).toMatch(/crc/i);
    expect(r.problems[0]!.offset).toBe(start);
  });

  it('a stream cut short: missing END', async () => {
    const buf = read('sample.stream');
    const r = await verifyStream([buf.subarray(0, 17 + 2000)]);
    expect(r.ok).toBe(false);
    expect(r.problems[0]!.message).toMatch(/truncated|END/);
  });

  for (const codec of ['zstd', 'zlib', 'lzo']) {
    it(`corrupt ${codec} data in an ENCODED_WRITE: does not decode, with offset and path`, async () => {
      const e = await editEncoded(`${codec}-v2.stream`, 0, (c) => {
        for (let i = 8; i < c.data.length; i++) c.data[i] = (c.data[i]! * 7 + 13) & 0xff;
        return c;
      });
      const r = await verifyStream([e.bytes]);
      expect(r.ok).toBe(false);
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0]).toMatchObject({ kind: 'encoded', offset: e.offset, path: e.path, command: 'BTRFS_SEND_C_ENCODED_WRITE' });
      expect(r.problems[0]!.message).toMatch(/does not decode|short/);
    });
  }

  it('an ENCODED_WRITE whose data decodes to less than its stated file range', async () => {
    await initCodecs();
    const data = compressExtent(BTRFS_COMPRESS_ZSTD, new Uint8Array(20000).fill(3), 4096)!;
    const cmds: SendCommand[] = [
      { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('v'), uuid: uuid(1), ctransid: 1n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('f'), ino: 257n },
      { cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: b('f'), fileOffset: 0n, unencodedFileLen: 20000n, unencodedLen: 20480n, unencodedOffset: 0n, compression: 2, data },
      { cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: b('f'), fileOffset: 0n, unencodedFileLen: 24576n, unencodedLen: 24576n, unencodedOffset: 0n, compression: 2, data },
      { cmd: C.BTRFS_SEND_C_END },
    ];
    const r = await verifyStream([encodeAll(2, cmds)]);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]!.commandIndex).toBe(3);
    expect(r.problems[0]!.message).toContain('decodes to 20000 bytes, short of the stated range 0..24576');
  });

  it('a huge unencoded_len is reported without decoding (no allocation of what the stream claims)', async () => {
    for (const compression of [1, 2, 3]) {
      const cmds: SendCommand[] = [
        { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('v'), uuid: uuid(1), ctransid: 1n },
        { cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: b('f'), fileOffset: 0n, unencodedFileLen: 4096n, unencodedLen: 1n << 40n, unencodedOffset: 0n, compression, data: new Uint8Array(100) },
        { cmd: C.BTRFS_SEND_C_END },
      ];
      const r = await verifyStream([encodeAll(2, cmds)]);
      expect(r.problems.map((p) => p.message)).toEqual([`unencoded_len ${1n << 40n} exceeds the 131072-byte limit of compressed extents (not decoded) (file offset 0)`]);
    }
  });

  it('hostile paths, unknown commands, v2 commands in v1 and commands before SUBVOL', async () => {
    const cmds: SendCommand[] = [
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('early'), ino: 256n },
      { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('v'), uuid: uuid(1), ctransid: 1n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('../up'), ino: 257n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('/abs'), ino: 258n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b('a//b'), ino: 259n },
      { cmd: C.BTRFS_SEND_C_MKFILE, path: b([0x61, 0, 0x62]), ino: 260n },
      { cmd: C.BTRFS_SEND_C_RENAME, path: b('ok'), pathTo: b('x/../../y') },
      { cmd: C.BTRFS_SEND_C_CLONE, path: b('ok'), fileOffset: 0n, cloneLen: 4096n, cloneUuid: uuid(1), cloneCtransid: 1n, clonePath: b('/etc/passwd'), cloneOffset: 0n },
      { cmd: C.BTRFS_SEND_C_SYMLINK, path: b('l'), ino: 261n, pathLink: b('../../anything') }, // a target may point anywhere
      { cmd: C.BTRFS_SEND_C_CHOWN, path: b(''), uid: 0n, gid: 0n }, // the root: fine
      { cmd: C.BTRFS_SEND_C_UNLINK, path: b('') }, // the root cannot be unlinked
      { cmd: C.BTRFS_SEND_C_FILEATTR, path: b('ok'), fileattr: 0n },
      { cmd: 99, unknown: true, payload: new Uint8Array(0) },
      { cmd: C.BTRFS_SEND_C_END },
    ];
    const r = await verifyStream([encodeAll(1, cmds)]);
    const got = r.problems.map((p) => `${p.commandIndex} ${p.kind} ${p.message}`);
    expect(got).toEqual([
      '0 no-subvol MKFILE before any SUBVOL/SNAPSHOT',
      '2 unsafe-path path "../up": ".." component',
      '3 unsafe-path path "/abs": absolute path',
      '4 unsafe-path path "a//b": empty component (leading, trailing or doubled "/")',
      '5 unsafe-path path "a\\u0000b": NUL byte in path',
      '6 unsafe-path path_to "x/../../y": ".." component',
      '7 unsafe-path clone_path "/etc/passwd": absolute path',
      '10 unsafe-path path "": empty path where a name is required',
      '11 version FILEATTR is not part of protocol version 1',
      '12 unknown-command unknown command id 99 (0 bytes)',
    ]);
    expect(r.problems[1]).toMatchObject({ path: '../up', command: 'BTRFS_SEND_C_MKFILE' });
  });
});

describe('CLI', () => {
  const cli = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
  const built = spawnSync('node', [cli, '--version']).status === 0;
  it('exit codes and --json', () => {
    if (!built) {
      console.warn('SKIP tools-verify CLI: run `npx tsc -p .` first (bin/btrfs-ts.js needs dist/)');
      return;
    }
    const ok = spawnSync('node', [cli, 'verify', '-f', join(STREAMS_DIR, 'sample.stream'), '--json']);
    expect(ok.status).toBe(0);
    const j = JSON.parse(ok.stdout.toString()) as { ok: boolean; subvolumes: { name: string }[] };
    expect(j.ok).toBe(true);
    expect(j.subvolumes[0]!.name).toBe('sample');
    const bad = read('sample.stream').slice();
    bad[300] ^= 1;
    const r = spawnSync('node', [cli, 'verify'], { input: bad });
    expect(r.status).toBe(1);
    expect(r.stdout.toString()).toMatch(/PROBLEM stream: at byte \d+.*CRC/);
    expect(r.stdout.toString()).toMatch(/^FAILED: /m);
  });
});
