import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { FullSend } from '../src/send/full.js';
import * as C from '../src/stream/constants.js';
import { encodeCommand } from '../src/stream/writer.js';
import { crc32cRaw } from '../src/util/crc32c.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * The send takes the CRC of file data from the sector checksums it has just verified (readVerified), and
 * the encoder combines it into the command CRC instead of a second pass over the bytes. Each hint must be
 * the data's real CRC, and the encoder must use it (a wrong hint shows in the bytes).
 */
let source: lib.BtrfsImage;
beforeAll(async () => {
  const dev = new lib.MemoryDevice(256n << 20n);
  const fs = lib.createFilesystem(dev, { growable: true });
  for (const s of ['full-v1', 'zstd-v2']) await lib.receiveStreams(createReadStream(join(STREAMS_DIR, `${s}.stream`)), fs);
  source = await lib.BtrfsImage.open(lib.fromBlockDevice(dev));
});

interface DataCmd { cmd: number; dataCrc?: number; real: number; len: number }

async function dataCommands(subvol: string, version: number, compressedData: boolean): Promise<DataCmd[]> {
  const sv = await source.subvolumeByPath(subvol);
  const out: DataCmd[] = [];
  for await (const c of new FullSend(source.reader, sv, { version, compressedData, noData: false, cloneSources: [] }).commands()) {
    // the data is a view of a reused buffer: its CRC is taken now
    if (c.cmd === C.BTRFS_SEND_C_WRITE || c.cmd === C.BTRFS_SEND_C_ENCODED_WRITE) out.push({ cmd: c.cmd, dataCrc: c.dataCrc, len: c.data.length, real: crc32cRaw(c.data) });
  }
  return out;
}

describe('data CRCs from verified sector checksums', () => {
  it('WRITE (plain extents) and ENCODED_WRITE carry their data CRC, and it is the real one', async () => {
    for (const [subvol, version, compressed, cmd] of [['full', 1, false, C.BTRFS_SEND_C_WRITE], ['zstd', 2, true, C.BTRFS_SEND_C_ENCODED_WRITE]] as const) {
      const cmds = await dataCommands(subvol, version, compressed);
      const hinted = cmds.filter((c) => c.dataCrc !== undefined);
      expect(hinted.filter((c) => c.cmd === cmd).length, subvol).toBeGreaterThan(0);
      for (const c of hinted) {
        expect(c.len % 4096).toBe(0);
        expect(c.dataCrc).toBe(c.real);
      }
    }
  });

  it('the encoder combines a hint into the command CRC: same bytes as a pass for the right one, used as given', () => {
    const data = new Uint8Array(48 * 1024).map((_, i) => (i * 31) & 0xff);
    const base = { cmd: C.BTRFS_SEND_C_WRITE, path: new TextEncoder().encode('a/b'), fileOffset: 4096n, data } as const;
    const plain = encodeCommand(base, 1);
    expect(Buffer.from(encodeCommand({ ...base, dataCrc: crc32cRaw(data) }, 1)).equals(Buffer.from(plain))).toBe(true);
    const wrong = encodeCommand({ ...base, dataCrc: crc32cRaw(data) ^ 1 }, 1);
    expect(Buffer.from(wrong.subarray(6, 10)).equals(Buffer.from(plain.subarray(6, 10)))).toBe(false);
    // data that is not whole 4 KiB sectors: the hint is not used
    const odd = { ...base, data: data.subarray(0, 5000) };
    expect(Buffer.from(encodeCommand({ ...odd, dataCrc: 12345 }, 1)).equals(Buffer.from(encodeCommand(odd, 1)))).toBe(true);
  });
});
