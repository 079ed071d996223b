import { describe, expect, it } from 'vitest';
import { Block } from '../src/image/engine/block.js';
import { decodeBlock, encodeBlock } from '../src/image/engine/block-codec.js';
import { checkTreeCopy } from '../src/image/read/block-check.js';
import { BTRFS_CSUM_TYPE_CRC32, BTRFS_CSUM_TYPE_SHA256 } from '../src/image/structs/constants.js';
import { setBlockCsum } from '../src/image/structs/csum.js';
import type { BtrfsKey } from '../src/image/structs/fs-items.js';
import { buildLeaf, buildNode } from '../src/image/structs/tree-block.js';

/**
 * The engine's own block decoder and encoder (engine/block-codec.ts) against the structs/ ones it
 * replaced on the engine's path: the same bytes out, the same arrays in, and the same answer — in the
 * same words — for every kind of bad copy (what a read error reports, and what the faults tests match).
 */
const NODESIZE = 16384;
const FSID = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const CHUNK_UUID = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
const BYTENR = 30408704n;

let seed = 12345;
const rnd = (n: number): number => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};
const big = (): bigint => (BigInt(rnd(1 << 30)) << 34n) | BigInt(rnd(1 << 30));

function keys(n: number): BtrfsKey[] {
  const out: BtrfsKey[] = [];
  let objectid = BigInt(rnd(1000));
  for (let i = 0; i < n; i++) {
    objectid += BigInt(1 + rnd(3));
    out.push({ objectid: i % 7 === 3 ? objectid + (1n << 63n) : objectid, type: rnd(256), offset: big() });
  }
  return out.sort((a, b) => (a.objectid < b.objectid ? -1 : a.objectid > b.objectid ? 1 : 0));
}

function leaf(n: number, owner: bigint): Block {
  const b = new Block(BYTENR, 0, 77n, owner);
  for (const k of keys(n)) b.insertItem(b.nritems, k, Uint8Array.from({ length: rnd(120) }, () => rnd(256)));
  return b;
}

function node(n: number, level: number): Block {
  const b = new Block(BYTENR, level, 77n, 5n);
  for (const k of keys(n)) b.insertPtr(b.nritems, k, big(), big());
  return b;
}

const header = (b: Block) => ({ fsid: FSID, bytenr: b.bytenr, flags: b.flags | 1n, chunk_tree_uuid: CHUNK_UUID, generation: b.generation, owner: b.owner });
const expectOf = (b: Block) => ({ level: b.level, generation: b.generation, owner: b.owner, firstKey: b.keys[0] });

describe('engine block codec', () => {
  for (const csumType of [BTRFS_CSUM_TYPE_CRC32, BTRFS_CSUM_TYPE_SHA256]) {
    it(`encodes as buildLeaf/buildNode and decodes as parseTreeBlock (csum type ${csumType})`, () => {
      for (const b of [leaf(0, 7n), leaf(1, 7n), leaf(150, 2n), node(1, 1), node(300, 2), node(493, 7)]) {
        const bytes = encodeBlock(b, NODESIZE, FSID, CHUNK_UUID, csumType);
        const want = b.level === 0
          ? buildLeaf(header(b), b.keys.map((key, i) => ({ key, data: b.data[i]! })), NODESIZE, csumType)
          : buildNode(header(b), b.level, b.keys.map((key, i) => ({ key, blockptr: b.ptrs[i]!, generation: b.ptrGens[i]! })), NODESIZE, csumType);
        expect(Buffer.from(bytes).equals(Buffer.from(want))).toBe(true);
        const d = decodeBlock(bytes, NODESIZE, BYTENR, expectOf(b), FSID, csumType);
        if (typeof d === 'string') throw new Error(d);
        expect([d.bytenr, d.level, d.generation, d.owner, d.flags, d.used]).toEqual([b.bytenr, b.level, b.generation, b.owner, b.flags | 1n, b.used]);
        expect(d.keys).toEqual(b.keys);
        expect(d.data.map((x) => [...x])).toEqual(b.data.map((x) => [...x]));
        expect(d.ptrs).toEqual(b.ptrs);
        expect(d.ptrGens).toEqual(b.ptrGens);
      }
    });
  }

  it('a bad copy is refused in the words of checkTreeCopy', () => {
    const b = leaf(40, 5n);
    const good = encodeBlock(b, NODESIZE, FSID, CHUNK_UUID, BTRFS_CSUM_TYPE_CRC32);
    const exp = expectOf(b);
    const resum = (f: (x: Uint8Array, dv: DataView) => void): Uint8Array => {
      const x = good.slice();
      f(x, new DataView(x.buffer));
      setBlockCsum(x, BTRFS_CSUM_TYPE_CRC32);
      return x;
    };
    const cases: [string, Uint8Array, Parameters<typeof decodeBlock>[3], bigint?][] = [
      ['bit flip', (() => { const x = good.slice(); x[5000] ^= 1; return x; })(), exp],
      ['bytenr', good, exp, BYTENR + 16384n],
      ['fsid', resum((x) => { x[40] ^= 0xff; }), exp],
      ['level', good, { ...exp, level: 1 }],
      ['generation', good, { ...exp, generation: 78n }],
      ['owner', good, { ...exp, owner: 6n }],
      ['first key', good, { ...exp, firstKey: { ...b.keys[0]!, offset: b.keys[0]!.offset + 1n } }],
      ['level too high', resum((x) => { x[100] = 8; }), exp],
      ['nritems', resum((_, dv) => dv.setUint32(96, 700, true)), exp],
      ['item data gap', resum((_, dv) => dv.setUint32(101 + 25 * 3 + 17, dv.getUint32(101 + 25 * 3 + 17, true) - 1, true)), exp],
      ['data over headers', resum((_, dv) => { dv.setUint32(101 + 25 * 39 + 17, 10, true); }), exp],
      ['key order', resum((_, dv) => dv.setBigUint64(101 + 25 * 5, 0n, true)), exp],
      ['empty node', resum((x, dv) => { x[100] = 1; dv.setUint32(96, 0, true); }), { ...exp, level: 1 }],
    ];
    for (const [what, bytes, e, at] of cases) {
      const d = decodeBlock(bytes, NODESIZE, at ?? BYTENR, e, FSID, BTRFS_CSUM_TYPE_CRC32);
      const r = checkTreeCopy(bytes, NODESIZE, at ?? BYTENR, e, FSID, BTRFS_CSUM_TYPE_CRC32);
      expect('why' in r, what).toBe(true);
      expect(d, what).toBe((r as { why: string }).why);
    }
  });
});
