import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BTRFS_COMPRESS_LZO, BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_ZSTD, type BtrfsCompressType, compressExtent, decompressExtent, initCodecs,
} from '../src/compress/index.js';
import { CodecError } from '../src/errors.js';
import { BTRFS_CSUM_TYPE_CRC32, BTRFS_FILE_EXTENT_REG } from '../src/image/structs.js';
import type { ImageReader } from '../src/image/read/image.js';
import { crc32cBtrfs } from '../src/util/crc32c.js';
import { ExtentAhead, SLOTS, type StoredJob } from '../src/send/extent-ahead.js';
import type { ExtentRef } from '../src/send/extent-data.js';
import { skipReason } from './helpers/oracle.js';

/**
 * The send's reading thread (src/send/extent-ahead.ts): extents announced ahead are read, checked and
 * decoded on a worker into memory shared with it; what the send claims must be what reading and decoding
 * in line gives, codec errors must name the extent, anything else unusual (a checksum mismatch on every
 * copy, a worker that cannot start) must leave the extent to the send. The worker imports the compiled
 * modules (dist/), which `npm test` builds first.
 */
const DIST = join(import.meta.dirname, '..', 'dist');
const built = existsSync(join(DIST, 'compress', 'index.js')) && existsSync(join(DIST, 'image', 'structs', 'csum.js'));
const modules = pathToFileURL(DIST + '/').href;
const SS = 4096;
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-ahead-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

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
const noJob = async (): Promise<StoredJob> => { throw new Error('the worker has no file here'); };
const decoder = (o: { modules?: string } = {}) => new ExtentAhead({ csumType: BTRFS_CSUM_TYPE_CRC32, sectorsize: SS, decode: true, modules, ...o });

/** crc32c of each sector, as a csum item holds them. */
function sumsOf(b: Uint8Array): { sums: Uint8Array; have: Uint8Array } {
  const n = b.length / SS;
  const sums = new Uint8Array(n * 4);
  const dv = new DataView(sums.buffer);
  for (let i = 0; i < n; i++) dv.setUint32(i * 4, crc32cBtrfs(b.subarray(i * SS, (i + 1) * SS)), true);
  return { sums, have: new Uint8Array(n).fill(1) };
}

beforeAll(async () => {
  await initCodecs();
});

describe.skipIf(!built)('extents decoded ahead on a worker thread', () => {

  it('zstd, zlib and lzo extents claimed in order equal in-line decoding, more extents than slots', async () => {
    const ahead = decoder();
    const types = [BTRFS_COMPRESS_ZSTD, BTRFS_COMPRESS_ZLIB, BTRFS_COMPRESS_LZO] as const;
    const all = Array.from({ length: 2 * SLOTS + 7 }, (_, i) => extent(i, types[i % 3]!, i % 5 === 0 ? 40 * 1024 + 512 : 128 * 1024));
    try {
      let next = 0;
      for (const e of all) {
        while (next < all.length && ahead.room) await ahead.ahead(all[next]!.x, noJob, readInto(all[next++]!));
        const got = (await ahead.claim(e.x))?.decoded;
        expect(got, e.x.what).toBeDefined();
        expect(Buffer.compare(got!, e.plain), e.x.what).toBe(0);
        // the slot is the send's until its next claim: later announcements do not touch it
        const before = Buffer.from(got!);
        while (next < all.length && ahead.room) await ahead.ahead(all[next]!.x, noJob, readInto(all[next++]!));
        expect(Buffer.compare(got!, before)).toBe(0);
      }
    } finally {
      ahead.close();
    }
  });

  it('announcements the send went past are dropped and their slots come back', async () => {
    const ahead = decoder();
    try {
      const es = Array.from({ length: SLOTS }, (_, i) => extent(100 + i, BTRFS_COMPRESS_ZSTD));
      for (const e of es) await ahead.ahead(e.x, noJob, readInto(e));
      expect(ahead.room).toBe(false);
      const last = (await ahead.claim(es[SLOTS - 1]!.x))?.decoded;
      expect(Buffer.compare(last!, es[SLOTS - 1]!.plain)).toBe(0);
      // not announced: the caller decodes in line
      expect(await ahead.claim(extent(200, BTRFS_COMPRESS_ZSTD).x)).toBeUndefined();
      // the skipped ones settle on the worker (which may still be starting: the send took the last one)
      const more = Array.from({ length: SLOTS }, (_, i) => extent(300 + i, BTRFS_COMPRESS_LZO));
      for (const e of more) {
        for (let i = 0; i < 500 && !ahead.room; i++) await new Promise((r) => setTimeout(r, 10));
        await ahead.ahead(e.x, noJob, readInto(e));
      }
      for (const e of more) expect(Buffer.compare((await ahead.claim(e.x))!.decoded!, e.plain)).toBe(0);
    } finally {
      ahead.close();
    }
  });

  it('while it would wait, the send does the jobs the worker has not begun; their slots come back once the worker has passed them', async () => {
    const ahead = decoder();
    try {
      await ahead.ready();
      // announced while the worker is still starting (loading its modules): the send takes them
      const first = Array.from({ length: SLOTS }, (_, i) => extent(400 + i, i % 2 ? BTRFS_COMPRESS_ZSTD : BTRFS_COMPRESS_LZO));
      for (const e of first) await ahead.ahead(e.x, noJob, readInto(e));
      for (const e of first) expect(Buffer.compare((await ahead.claim(e.x))!.decoded!, e.plain), e.x.what).toBe(0);
      expect(ahead.takenHere).toBeGreaterThan(0);
      // other codecs in the same slots: a slot reused before the worker passed its old job would have
      // that job (another codec, another size) run on the new bytes, and fail or differ
      const more = Array.from({ length: 2 * SLOTS }, (_, i) => extent(500 + i, BTRFS_COMPRESS_ZLIB, 64 * 1024 + 4096 * (i % 3)));
      let next = 0;
      for (const e of more) {
        for (let i = 0; i < 300 && next < more.length && !ahead.room && next < SLOTS; i++) await new Promise((r) => setTimeout(r, 10));
        while (next < more.length && ahead.room) await ahead.ahead(more[next]!.x, noJob, readInto(more[next++]!));
        expect(Buffer.compare((await ahead.claim(e.x))!.decoded!, e.plain), e.x.what).toBe(0);
      }
    } finally {
      ahead.close();
    }
  });

  it('a corrupt extent fails as in-line decoding fails: a CodecError naming the extent', async () => {
    const ahead = decoder();
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
      await ahead.ahead(e.x, noJob, readInto(e));
      const err = await ahead.claim(e.x).then(() => undefined, (x: unknown) => x);
      expect(err).toBeInstanceOf(CodecError);
      expect((err as CodecError).message).toContain('file extent 7: ');
      expect((err as CodecError).code).toBe((inline as CodecError).code);
    } finally {
      ahead.close();
    }
  });

  it('a read that fails gives its slot back and fails the announcement', async () => {
    const ahead = decoder();
    try {
      const e = extent(9, BTRFS_COMPRESS_ZSTD);
      await expect(ahead.ahead(e.x, noJob, async () => { throw new Error('read failed'); })).rejects.toThrow('read failed');
      for (let i = 0; i < SLOTS; i++) {
        const f = extent(400 + i, BTRFS_COMPRESS_ZSTD);
        expect(ahead.room).toBe(true);
        await ahead.ahead(f.x, noJob, readInto(f));
      }
      expect(ahead.room).toBe(false);
    } finally {
      ahead.close();
    }
  });
});

describe.skipIf(!built)('extents read and checked by the worker from the image file', () => {
  /** Extents written into a file at 1 MiB steps (a second copy, DUP-like, 64 MiB further), their sums. */
  function fileWith(es: Extent[], corruptFirstCopy: number[] = []): string {
    const path = join(work, `image-${Math.random().toString(36).slice(2)}`);
    const fd = openSync(path, 'w');
    es.forEach((e, i) => {
      const bad = e.stored.slice();
      bad[100] ^= 1;
      writeSync(fd, corruptFirstCopy.includes(i) ? bad : e.stored, 0, e.stored.length, i << 20);
      writeSync(fd, e.stored, 0, e.stored.length, (64 << 20) + (i << 20));
    });
    closeSync(fd);
    return path;
  }
  const job = (i: number, e: Extent, copies = 1) => async (): Promise<StoredJob> =>
    ({ copies: [BigInt(i << 20), BigInt((64 << 20) + (i << 20))].slice(0, copies), sums: sumsOf(e.stored) });
  const refuse = async (): Promise<Uint8Array> => { throw new Error('the send was asked to read'); };

  it('stored bytes as they are (--compressed-data) and decoded (protocol 1), with the sums they matched', async () => {
    const es = Array.from({ length: 12 }, (_, i) => extent(500 + i, i % 2 ? BTRFS_COMPRESS_ZSTD : BTRFS_COMPRESS_LZO));
    const path = fileWith(es);
    for (const decode of [false, true]) {
      const ahead = new ExtentAhead({ path, csumType: BTRFS_CSUM_TYPE_CRC32, sectorsize: SS, decode, modules });
      try {
        let next = 0;
        for (const e of es) {
          while (next < es.length && ahead.room) { await ahead.ahead(es[next]!.x, job(next, es[next]!), refuse); next++; }
          const got = await ahead.claim(e.x);
          expect(got, e.x.what).toBeDefined();
          expect(Buffer.compare(got!.stored, e.stored)).toBe(0);
          expect(Buffer.compare(got!.sums!, sumsOf(e.stored).sums)).toBe(0);
          if (decode) expect(Buffer.compare(got!.decoded!, e.plain)).toBe(0);
          else expect(got!.decoded).toBeUndefined();
        }
      } finally {
        ahead.close();
      }
    }
  });

  it('a first copy that does not match is passed over for the second; no matching copy hands the extent back', async () => {
    const es = [extent(600, BTRFS_COMPRESS_ZSTD), extent(601, BTRFS_COMPRESS_ZSTD)];
    const path = fileWith(es, [0, 1]);
    const ahead = new ExtentAhead({ path, csumType: BTRFS_CSUM_TYPE_CRC32, sectorsize: SS, decode: true, modules });
    try {
      await ahead.ahead(es[0]!.x, job(0, es[0]!, 2), refuse);
      await ahead.ahead(es[1]!.x, job(1, es[1]!, 1), refuse);
      expect(Buffer.compare((await ahead.claim(es[0]!.x))!.decoded!, es[0]!.plain)).toBe(0);
      // the only copy is bad: the send reads it itself (and reports the mismatch in its own words)
      expect(await ahead.claim(es[1]!.x)).toBeUndefined();
      expect(ahead.room).toBe(true);
    } finally {
      ahead.close();
    }
  });
});

describe('extents ahead without a usable worker', () => {
  it('a worker whose modules do not load hands every extent back to the send', async () => {
    const ahead = decoder({ modules: 'file:///nonexistent/' });
    try {
      const e = extent(11, BTRFS_COMPRESS_ZSTD);
      await ahead.ahead(e.x, noJob, readInto(e));
      expect(await ahead.claim(e.x)).toBeUndefined();
      expect(ahead.room).toBe(false); // nothing more is announced once the worker said it cannot work
    } finally {
      ahead.close();
    }
  });
});

describe.skipIf(built)('extents read ahead on a worker thread', () => {
  it('needs a build', () => skipReason('send-extent-ahead', 'run `npx tsc -p .` first (the worker imports dist/)'));
});
