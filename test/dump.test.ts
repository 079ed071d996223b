import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dumpStream } from '../src/dump/index.js';
import { StreamError } from '../src/errors.js';
import * as C from '../src/stream/constants.js';
import { encodeCommand } from '../src/stream/writer.js';
import { allCommands, b, concat, encodeAll, slicings, uuid } from './helpers/craft.js';
import { hasTool, progsDump, skipReason } from './helpers/oracle.js';
import { capturedStreams, STREAMS_DIR } from './helpers/streams.js';

beforeAll(() => {
  // the stored dumps were made with TZ=UTC; Node re-reads TZ when it is assigned
  process.env.TZ = 'UTC';
});

async function ourDump(input: Uint8Array | Uint8Array[], allStreams = false): Promise<{ out: Buffer; error?: unknown }> {
  const lines: string[] = [];
  try {
    await dumpStream(Array.isArray(input) ? input : [input], (l) => lines.push(l), { allStreams });
    return { out: Buffer.from(lines.join(''), 'latin1') };
  } catch (error) {
    return { out: Buffer.from(lines.join(''), 'latin1'), error };
  }
}

describe('dump of captured streams equals the stored btrfs-progs dump', () => {
  for (const f of capturedStreams()) {
    const dumpFile = join(STREAMS_DIR, f.replace(/\.stream$/, '.dump'));
    it(f, async () => {
      expect(existsSync(dumpFile)).toBe(true);
      const stream = new Uint8Array(readFileSync(join(STREAMS_DIR, f)));
      const { out, error } = await ourDump(stream);
      expect(error).toBeUndefined();
      expect(out.toString('latin1')).toBe(readFileSync(dumpFile).toString('latin1'));
    });
  }
});

describe('dump against the live btrfs-progs on crafted streams', () => {
  const live = hasTool('btrfs');
  if (!live) skipReason('live btrfs receive --dump comparison', 'btrfs-progs is not installed (apt-get install btrfs-progs)');

  // progs v6.2 refuses version 3 (experimental builds only), so the live comparison covers v1 and v2
  for (const version of [1, 2]) {
    it.runIf(live)(`v${version}: every command, odd names and times, byte for byte`, async () => {
      const stream = encodeAll(version, allCommands(version));
      const ref = progsDump(stream);
      expect(ref.status).toBe(0);
      for (const [how, chunks] of slicings(stream)) {
        const { out, error } = await ourDump(chunks);
        expect(error, how).toBeUndefined();
        expect(out.toString('latin1'), how).toBe(ref.stdout.toString('latin1'));
      }
    });
  }

  it.runIf(live)('several streams in one input: only the first is dumped, as btrfs-progs does', async () => {
    const second = allCommands(2);
    second[0] = { cmd: C.BTRFS_SEND_C_SNAPSHOT, path: b('snap2'), uuid: uuid(2), ctransid: 9n, cloneUuid: uuid(1), cloneCtransid: 7n };
    const stream = concat(encodeAll(1, allCommands(1)), encodeAll(2, second));
    const ref = progsDump(stream);
    const { out } = await ourDump(stream);
    expect(out.toString('latin1')).toBe(ref.stdout.toString('latin1'));
    expect(out.toString('latin1')).not.toContain('snapshot');
    const all = await ourDump(stream, true);
    expect(all.out.toString('latin1')).toContain('snapshot       ');
    expect(all.out.toString('latin1').startsWith(out.toString('latin1'))).toBe(true);
  });

  it.runIf(live)('a crafted stream with a CRC error: same lines before the error, and both fail', async () => {
    const stream = encodeAll(2, allCommands(2));
    const bad = stream.slice();
    // flip a byte inside the 6th command's payload
    let off = C.BTRFS_STREAM_HEADER_SIZE;
    for (let i = 0; i < 5; i++) off += C.BTRFS_CMD_HEADER_SIZE + new DataView(bad.buffer).getUint32(off, true);
    bad[off + C.BTRFS_CMD_HEADER_SIZE + 3]! ^= 0x40;
    const ref = progsDump(bad);
    expect(ref.status).not.toBe(0);
    expect(ref.stderr).toContain('crc32 mismatch');
    const { out, error } = await ourDump(bad);
    expect(error).toBeInstanceOf(StreamError);
    expect((error as StreamError).code).toBe('CRC_MISMATCH');
    expect((error as StreamError).offset).toBe(off);
    expect((error as StreamError).commandIndex).toBe(5);
    expect(out.toString('latin1')).toBe(ref.stdout.toString('latin1'));
  });
});

describe('dump details', () => {
  it('reports unknown commands with id and length and goes on (btrfs-progs skips them silently)', async () => {
    const unknown = encodeCommand({ cmd: 99, unknown: true, payload: b([15, 0, 1, 0, 0x61]) }, 2);
    const head = encodeAll(2, [allCommands(2)[0]!, { cmd: C.BTRFS_SEND_C_END }]);
    // splice the unknown command before END
    const endLen = C.BTRFS_CMD_HEADER_SIZE;
    const spliced = concat(head.subarray(0, head.length - endLen), unknown, head.subarray(head.length - endLen));
    const { out, error } = await ourDump(spliced);
    expect(error).toBeUndefined();
    expect(out.toString('latin1').split('\n')[1]).toBe('unknown         cmd=99 len=5');
  });

  it('prints FILEATTR the way progs does (decimal after 0x) and fallocate mode as int', async () => {
    const { out } = await ourDump(encodeAll(2, allCommands(2)));
    const text = out.toString('latin1');
    expect(text).toMatch(/\nfileattr +\.\/vol\/x{255} fileattr=0x16\n/);
    expect(text).toMatch(/\nfallocate +\.\/vol\/x{255} mode=1 offset=0 len=1048576\n/);
  });

  it('v3 streams (verity) dump with an enable_verity line', async () => {
    const { out, error } = await ourDump(encodeAll(3, allCommands(3)));
    expect(error).toBeUndefined();
    expect(out.toString('latin1')).toMatch(/\nenable_verity +\.\/vol\/x{255} algorithm=1 block_size=4096 salt_len=4 sig_len=0\n/);
  });
});

describe('dump as a filter', () => {
  it('a reader that stops early (`| head -1`) ends the dump quietly', () => {
    const bin = join(__dirname, '..', 'bin', 'btrfs-ts.js');
    const r = spawnSync('sh', ['-c', `node ${bin} dump -f ${join(STREAMS_DIR, 'full-v1.stream')} | head -1`], { encoding: 'utf8' });
    expect(r.stdout.split('\n')[0]).toMatch(/^subvol +\.\/full /);
    expect(r.stderr).toBe('');
  });
});
