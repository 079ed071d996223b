import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BTRFS_COMPRESS_LZO, BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_ZSTD, type BtrfsCompressType, compressExtent, decompressExtent, initCodecs,
} from '../src/compress/index.js';
import { CodecError } from '../src/errors.js';
import { BTRFS_FILE_EXTENT_REG } from '../src/image/structs.js';
import type { ImageReader } from '../src/image/read/image.js';
import { DecodeAhead, decodeExtent } from '../src/send/decode-ahead.js';
import type { ExtentRef } from '../src/send/extent-data.js';
import { skipReason } from './helpers/oracle.js';

/**
 * The send's decoder thread (src/send/decode-ahead.ts): extents announced ahead are decoded on a worker
 * into memory shared with it; what the send claims must be what decoding in line gives, errors must name
 * the extent, and a worker that cannot start must leave the send decoding in line. The worker imports
 * the compiled codecs (dist/), which `npm test` builds first.
 */
const DIST_CODECS = join(import.meta.dirname, '..', 'dist', 'compress', 'index.js');
const built = existsSync(DIST_CODECS);
const SS = 4096;

/** Text-like content that compresses, different per seed. */
function content(seed: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = seed * 2654435761;
  for (let i = 0; i < len; i++) {
    if (i % 64 === 0) x = (x * 1103515245 + 12345) >>> 0;
    out[i] = 97 + ((x >>> (i % 24)) % 13);
  }
  return out;
}

interface Extent {
  x: ExtentRef;
  stored: Uint8Array;
  plain: Uint8Array;
}

function extent(n: number, type: BtrfsCompressType, len = 128 * 1024): Extent {
  const plain = content(n, len);
  const c = compressExtent(type, plain, SS);
  if (!c) throw new Error('test content did not compress');
  const stored = new Uint8Array(Math.ceil(c.length / SS) * SS);
  stored.set(c);
  const fe = {
    generation: 1n, ram_bytes: BigInt(len), compression: type, encryption: 0, other_encoding: 0, type: BTRFS_FILE_EXTENT_REG,
    disk_bytenr: BigInt(1 << 30) + BigInt(n) * 131072n, disk_num_bytes: BigInt(stored.length), offset: 0n, num_bytes: BigInt(len),
  };
  const x = { img: { sectorsize: SS } as ImageReader, csumRoot: undefined, verify: false, keyOffset: 0n, fe, what: `file extent ${n}` };
  return { x, stored, plain };
}

/** A read callback as the send gives it: the stored bytes into the slot it is handed. */
const readInto = (e: Extent) => async (into: Uint8Array): Promise<Uint8Array> => {
  into.set(e.stored);
  return into.subarray(0, e.stored.length);
};

beforeAll(async () => {
  await initCodecs();
});

describe.skipIf(!built)('decode ahead on a worker thread', () => {
  const codecs = pathToFileURL(DIST_CODECS).href;

  it('zstd, zlib and lzo extents claimed in order equal in-line decoding, more extents than slots', async () => {
    const ahead = new DecodeAhead(codecs);
    const types = [BTRFS_COMPRESS_ZSTD, BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_LZO] as const;
    const all = Array.from({ length: 30 }, (_, i) => extent(i, types[i % 3]!, i % 5 === 0 ? 40 * 1024 + 512 : 128 * 1024));
    try {
      let next = 0;
      for (const e of all) {
        while (next < all.length && ahead.room) await ahead.ahead(all[next]!.x, readInto(all[next++]!));
        const got = await ahead.decoded(e.x);
        expect(got, e.x.what).toBeDefined();
        expect(Buffer.compare(got!, e.plain), e.x.what).toBe(0);
        // the slot is the send's until its next claim: later announcements do not touch it
        const before = Buffer.from(got!);
        while (next < all.length && ahead.room) await ahead.ahead(all[next]!.x, readInto(all[next++]!));
        expect(Buffer.compare(got!, before)).toBe(0);
      }
    } finally {
      ahead.close();
    }
  });

  it('announcements the send went past are dropped and their slots come back', async () => {
    const ahead = new DecodeAhead(codecs);
    try {
      const es = Array.from({ length: 8 }, (_, i) => extent(100 + i, BTRFS_COMPRESS_ZSTD));
      for (const e of es) await ahead.ahead(e.x, readInto(e));
      expect(ahead.room).toBe(false);
      const last = await ahead.decoded(es[7]!.x);
      expect(Buffer.compare(last!, es[7]!.plain)).toBe(0);
      // not announced: the caller decodes in line
      expect(await ahead.decoded(extent(200, BTRFS_COMPRESS_ZSTD).x)).toBeUndefined();
      await new Promise((r) => setTimeout(r, 50)); // the skipped ones settle on the worker
      expect(ahead.room).toBe(true);
      const more = Array.from({ length: 8 }, (_, i) => extent(300 + i, BTRFS_COMPRESS_LZO));
      for (const e of more) await ahead.ahead(e.x, readInto(e));
      for (const e of more) expect(Buffer.compare((await ahead.decoded(e.x))!, e.plain)).toBe(0);
    } finally {
      ahead.close();
    }
  });

  it('a corrupt extent fails as in-line decoding fails: a CodecError naming the extent', async () => {
    const ahead = new DecodeAhead(codecs);
    try {
      const e = extent(7, BTRFS_COMPRESS_ZSTD);
      e.stored = e.stored.slice();
      e.stored.fill(0x55, 16, 200);
      let inline: unknown;
      try {
        decompressExtent(BTRFS_COMPRESS_ZSTD, e.stored, Number(e.x.fe.ram_bytes), SS);
      } catch (err) {
        inline = err;
      }
      expect(inline).toBeInstanceOf(CodecError);
      await ahead.ahead(e.x, readInto(e));
      const err = await ahead.decoded(e.x).then(() => undefined, (x: unknown) => x);
      expect(err).toBeInstanceOf(CodecError);
      expect((err as CodecError).message).toContain('file extent 7: ');
      expect((err as CodecError).code).toBe((inline as CodecError).code);
    } finally {
      ahead.close();
    }
  });

  it('a read that fails gives its slot back and fails the announcement', async () => {
    const ahead = new DecodeAhead(codecs);
    try {
      const e = extent(9, BTRFS_COMPRESS_ZSTD);
      await expect(ahead.ahead(e.x, async () => { throw new Error('read failed'); })).rejects.toThrow('read failed');
      for (let i = 0; i < 8; i++) {
        const f = extent(400 + i, BTRFS_COMPRESS_ZSTD);
        expect(ahead.room).toBe(true);
        await ahead.ahead(f.x, readInto(f));
      }
      expect(ahead.room).toBe(false);
    } finally {
      ahead.close();
    }
  });
});

describe('decode ahead without a usable worker', () => {
  it('a worker whose codec module does not load leaves decoding in line (decodeExtent), same bytes', async () => {
    const ahead = new DecodeAhead('file:///nonexistent/compress/index.js');
    try {
      const e = extent(11, BTRFS_COMPRESS_ZSTD);
      await ahead.ahead(e.x, readInto(e));
      const got = await decodeExtent(e.x, async () => e.stored, ahead);
      expect(Buffer.compare(got, e.plain)).toBe(0);
      expect(ahead.room).toBe(false); // nothing more is announced once the worker said it cannot decode
    } finally {
      ahead.close();
    }
  });
});

describe.skipIf(built)('decode ahead on a worker thread', () => {
  it('needs a build', () => skipReason('send-decode-ahead', 'run `npx tsc -p .` first (the worker imports dist/compress)'));
});
