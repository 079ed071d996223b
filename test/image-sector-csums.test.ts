import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { sectorCsums } from '../src/image/read/sector-csums.js';
import { BTRFS_EXTENT_CSUM_KEY, BTRFS_EXTENT_CSUM_OBJECTID, type LeafItem } from '../src/image/structs.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * sectorCsums answers from the csum leaf its last search ended in when that leaf holds the whole range
 * (sector-csums.ts), else by searching the tree: both must give what the csum items say, sector by sector —
 * here against a model built from every csum item, for ranges inside items, across their ends, over
 * holes between them and past the last one, asked in key order (the leaf reused) and backwards.
 */
let img: lib.BtrfsImage;
let items: LeafItem[];
beforeAll(async () => {
  const dev = new lib.MemoryDevice(256n << 20n);
  const fs = lib.createFilesystem(dev, { growable: true });
  for (const s of ['full-v1', 'zstd-v2', 'lzo-v2']) await lib.receiveStreams(createReadStream(join(STREAMS_DIR, `${s}.stream`)), fs);
  img = await lib.BtrfsImage.open(lib.fromBlockDevice(dev));
  const root = (await img.reader.csumTree())!;
  items = [];
  const key = (offset: bigint) => ({ objectid: BTRFS_EXTENT_CSUM_OBJECTID, type: BTRFS_EXTENT_CSUM_KEY, offset });
  for await (const it of img.reader.trees.iterate(root, key(0n), key((1n << 64n) - 1n))) items.push(it);
});

const SS = 4096;

/** The stored sums of [logical, logical + len) from the items themselves. */
function model(logical: bigint, len: number): { sums: number[]; have: number[] } {
  const n = len / SS;
  const sums: number[] = new Array<number>(n * 4).fill(0);
  const have: number[] = new Array<number>(n).fill(0);
  for (let i = 0; i < n; i++) {
    const s = logical + BigInt(i * SS);
    for (const it of items) {
      const count = it.data.length / 4;
      if (s >= it.key.offset && s < it.key.offset + BigInt(count * SS)) {
        const k = Number((s - it.key.offset) / BigInt(SS));
        for (let j = 0; j < 4; j++) sums[i * 4 + j] = it.data[k * 4 + j]!;
        have[i] = 1;
      }
    }
  }
  return { sums, have };
}

describe('sectorCsums', () => {
  it('gives each sector its stored checksum, or none, whether answered from the last leaf or by a search', async () => {
    expect(items.length).toBeGreaterThan(0);
    const ranges: [bigint, number][] = [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const end = it.key.offset + BigInt((it.data.length / 4) * SS);
      ranges.push([it.key.offset, Number(end - it.key.offset)], [it.key.offset + BigInt(SS), SS], [end - BigInt(SS), 3 * SS]);
      if (it.key.offset >= BigInt(2 * SS)) ranges.push([it.key.offset - BigInt(2 * SS), 4 * SS]);
      const next = items[i + 1];
      if (next) ranges.push([end - BigInt(SS), Number(next.key.offset - end) + 2 * SS]);
    }
    const last = items[items.length - 1]!;
    ranges.push([last.key.offset + (1n << 30n), 2 * SS]);
    for (const order of [ranges, [...ranges].reverse()]) {
      // one root object for the whole pass, as a send holds it: its last leaf is reused between ranges
      const root = (await img.reader.csumTree())!;
      for (const [logical, len] of order) {
        const got = await sectorCsums(img.reader, root, logical, len, 4);
        expect({ sums: [...got.sums], have: [...got.have] }, `${logical}+${len}`).toEqual(model(logical, len));
      }
    }
  });
});
