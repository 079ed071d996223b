import { it } from 'vitest';
import { BTree } from '../../src/image/engine/ctree.js';
import { makeStore } from '../helpers/engine-harness.js';
it('micro', () => {
  const { store } = makeStore(16384, 64 << 20);
  const t = BTree.create(store, 5n);
  const d = new Uint8Array(100);
  for (let i = 0; i < 200000; i++) t.put({ objectid: BigInt(256 + i), type: 1, offset: 0n }, d);
  for (let round = 0; round < 3; round++) {
    let t0 = process.hrtime.bigint();
    let n = 0;
    for (let i = 0; i < 200000; i += 1) { if (t.get({ objectid: BigInt(256 + i), type: 1, offset: 0n })) n++; }
    console.log('seq get ns/op', Number(process.hrtime.bigint() - t0) / 200000, n);
    t0 = process.hrtime.bigint();
    for (let i = 0; i < 200000; i += 1) { const j = (i * 7919) % 200000; t.get({ objectid: BigInt(256 + j), type: 1, offset: 0n }); }
    console.log('random get ns/op', Number(process.hrtime.bigint() - t0) / 200000);
    t0 = process.hrtime.bigint();
    for (let i = 0; i < 200000; i += 1) t.put({ objectid: BigInt(256 + i), type: 1, offset: 0n }, d);
    console.log('seq put ns/op', Number(process.hrtime.bigint() - t0) / 200000);
  }
});
