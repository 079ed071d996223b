import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BTRFS_COMPRESS_ZSTD, initCodecs } from '../src/compress/index.js';
import { ReceiveError } from '../src/errors.js';
import { PlanReceiver } from '../src/plan/plan-receiver.js';
import { planEncodedWrite, type ReasonCode } from '../src/plan/rules.js';
import * as C from '../src/stream/constants.js';
import { processStream } from '../src/stream/receiver.js';
import type { EncodedWriteCmd } from '../src/stream/types.js';
import { b } from './helpers/craft.js';
import { STREAMS_DIR } from './helpers/streams.js';

beforeAll(() => initCodecs());

const K = 1024n;
/** The first zstd extent of the captured stream: a 128 KiB frame padded to 12 KiB, as the kernel sends it. */
function zstdData(): Uint8Array {
  const stream = readFileSync(join(STREAMS_DIR, 'zstd-v2.stream'));
  const i = stream.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
  return new Uint8Array(stream.subarray(i, i + 12288));
}

function ew(over: Partial<EncodedWriteCmd> = {}): EncodedWriteCmd {
  return {
    cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: b('f'), fileOffset: 0n, unencodedFileLen: 128n * K,
    unencodedLen: 128n * K, unencodedOffset: 0n, compression: 2, data: new Uint8Array(12288), ...over,
  };
}

describe('planEncodedWrite: the kernel\'s encoded-write rules', () => {
  const ctx = { sectorsize: 4096, iSize: 0n };
  it('a kernel-shaped zstd extent passes through', () => {
    const d = planEncodedWrite(ew({ data: zstdData(), unencodedLen: 128n * K, unencodedFileLen: 128n * K }), ctx);
    expect(d.reasons).toEqual([]);
    expect(d.action).toBe('pass-through');
    expect(d.diskType).toBe(BTRFS_COMPRESS_ZSTD);
    expect(d.diskNumBytes).toBe(12288);
  });

  const cases: [string, Partial<EncodedWriteCmd>, Partial<typeof ctx> & { forceDecompress?: boolean; codecAllowed?: () => boolean }, ReasonCode][] = [
    ['compression 0 is plain data', { compression: 0 }, {}, 'uncompressed'],
    ['LZO framed for 8K sectors on a 4K image', { compression: 4, data: new Uint8Array(4096) }, {}, 'lzo-sector-mismatch'],
    ['unencoded_len over 128 KiB', { compression: 1, unencodedLen: 256n * K, unencodedFileLen: 256n * K }, {}, 'unencoded-len-too-large'],
    ['empty encoded data', { compression: 1, data: new Uint8Array(0) }, {}, 'encoded-len-out-of-range'],
    ['encoded data over 128 KiB', { compression: 1, data: new Uint8Array(129 * 1024) }, {}, 'encoded-len-out-of-range'],
    ['not smaller once rounded to the sector', { compression: 1, unencodedLen: 8192n, unencodedFileLen: 8192n, data: new Uint8Array(4097) }, {}, 'not-smaller'],
    ['unaligned file offset', { compression: 1, fileOffset: 512n }, {}, 'unaligned-offset'],
    ['unaligned unencoded_offset', { compression: 1, unencodedOffset: 512n, unencodedFileLen: 64n * K }, {}, 'unaligned-unencoded-offset'],
    ['unaligned end before EOF', { compression: 1, unencodedFileLen: 100000n }, { iSize: 1n << 20n }, 'unaligned-end'],
    ['codec the image may not take', { compression: 1 }, { codecAllowed: () => false }, 'codec-not-allowed'],
    ['--force-decompress', { compression: 1 }, { forceDecompress: true }, 'force-decompress'],
    ['zstd data that is no frame', { compression: 2, data: new Uint8Array(4096).fill(9) }, {}, 'zstd-bad-frame'],
  ];
  for (const [what, over, c, code] of cases) {
    it(`${what} → decompress (${code})`, () => {
      const d = planEncodedWrite(ew(over), { ...ctx, ...c });
      expect(d.action).toBe('decompress');
      expect(d.reasons.map((r) => r.code)).toContain(code);
    });
  }

  it('zstd frames needing a window over 128 KiB are decompressed', () => {
    // frame header: magic, FHD 0x00 (no single segment, no FCS), window descriptor 2^20
    const data = new Uint8Array(4096);
    data.set([0x28, 0xb5, 0x2f, 0xfd, 0x00, (20 - 10) << 3, 0x01, 0x00, 0x00]);
    const d = planEncodedWrite(ew({ data }), ctx);
    expect(d.reasons.map((r) => r.code)).toContain('zstd-window-too-large');
  });

  it('an unaligned end that reaches EOF passes (the kernel extends i_size)', () => {
    const d = planEncodedWrite(ew({ compression: 1, unencodedFileLen: 100000n }), { sectorsize: 4096, iSize: 100000n });
    expect(d.action).toBe('pass-through');
  });

  it('a small whole file stays an inline compressed extent even though a sector is not saved', () => {
    const d = planEncodedWrite(ew({ compression: 1, unencodedLen: 1500n, unencodedFileLen: 1500n, data: new Uint8Array(519) }), ctx);
    expect(d.action).toBe('pass-through');
    expect(d.inline).toBe(true);
  });

  it('refuses what no receiver can apply: encryption, unknown codecs, lengths past the extent', () => {
    expect(() => planEncodedWrite(ew({ encryption: 1 }), ctx)).toThrow(ReceiveError);
    expect(() => planEncodedWrite(ew({ compression: 8 }), ctx)).toThrow(/unknown encoded-write compression 8/);
    expect(() => planEncodedWrite(ew({ unencodedOffset: 8192n }), ctx)).toThrow(/exceeds unencoded_len/);
  });
});

describe('plans of captured streams agree with what the kernel\'s receive kept compressed', () => {
  for (const name of ['zstd-v2', 'lzo-v2', 'zlib-v2', 'sample']) {
    it(name, async () => {
      const file = join(STREAMS_DIR, `${name}.stream`);
      const cs = join(STREAMS_DIR, `${name}.compsize`);
      expect(existsSync(cs)).toBe(true);
      const r = new PlanReceiver({ sectorsize: 4096 });
      await processStream([readFileSync(file)], r);
      const t = r.report.totals;
      expect(t.encodedWrites.extents).toBeGreaterThan(0);
      // the kernel's receive kept every one of them compressed (receive-kernel.test.ts compares the
      // resulting compsize byte for byte); the planner must agree for every extent
      expect(t.byAction['pass-through'].extents).toBe(t.encodedWrites.extents);
      expect(t.byAction.decompress.extents).toBe(0);
      const codec = readFileSync(cs, 'utf8').split('\n').map((l) => l.split(/\s+/)[0]).find((w) => w === 'zstd' || w === 'lzo' || w === 'zlib');
      expect(Object.keys(t.byCodec)).toEqual([codec]);
    });
  }

  it('--force-decompress and --compress change every decision, with reasons', async () => {
    const file = readFileSync(join(STREAMS_DIR, 'lzo-v2.stream'));
    const r = new PlanReceiver({ sectorsize: 4096, forceDecompress: true, compress: { type: BTRFS_COMPRESS_ZSTD } });
    await processStream([file], r);
    const t = r.report.totals;
    expect(t.byAction['pass-through'].extents).toBe(0);
    expect(t.byReason['force-decompress']?.extents).toBe(t.encodedWrites.extents);
    // compressible log data recompresses; the kernel's rule (save a sector) decides each one
    expect(t.byAction.recompress.extents).toBeGreaterThan(0);
    expect(t.byAction.recompress.extents + t.byAction.decompress.extents).toBe(t.encodedWrites.extents);
  });

  it('`btrfs-ts plan --json` reports every extent and the totals', () => {
    const r = spawnSync('node', [join(__dirname, '..', 'bin', 'btrfs-ts.js'), 'plan', '--json', '-f', join(STREAMS_DIR, 'zstd-v2.stream')]);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout.toString());
    expect(j.sectorsize).toBe(4096);
    expect(j.extents.length).toBe(j.totals.encodedWrites.extents);
    expect(j.extents[0]).toMatchObject({ action: 'pass-through', codec: 'zstd' });
  });
});
