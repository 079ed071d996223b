#!/usr/bin/env node
// Throughput of checksum implementations for the four btrfs csum types, per 4 KiB data sector and per
// 16 KiB tree block: the ones src/image/structs/csum.ts uses (marked "used") and the candidates it was
// chosen from. Candidates that are not installed are skipped; to measure them all:
//   npm install --no-save @noble/hashes @node-rs/xxhash
// Prints a Markdown table. Usage: node bench/csum-algos.mjs [MiB per measurement, default 64]
import { createHash, randomBytes } from 'node:crypto';
import { loadCsum } from '../dist/image/structs/csum.js';

const MIB = Number(process.argv[2] ?? 64);
const N = MIB << 20;
const buf = randomBytes(N);
const out = new Uint8Array(32);
const optional = async (name) => import(name).catch(() => undefined);
const hw = await import('hash-wasm');
const noble2 = await optional('@noble/hashes/blake2.js');
const noble256 = await optional('@noble/hashes/sha2.js');
const noders = await optional('@node-rs/xxhash');
const wasm = (h) => (d) => { h.init(); h.update(d); return h.digest('binary'); };
const used = async (type) => { const a = await loadCsum(type); return (d) => a.digestInto(d, out, 0); };

const rows = [
  ['crc32c', 'our slice-16 JS (src/util/crc32c.ts)', true, await used(0)],
  ['xxhash64', 'hash-wasm', true, await used(1)],
  ['xxhash64', '@node-rs/xxhash (native addon)', false, noders && ((d) => noders.xxh64(d, 0n))],
  ['sha256', 'node:crypto (OpenSSL)', true, await used(2)],
  ['sha256', 'hash-wasm', false, wasm(await hw.createSHA256())],
  ['sha256', '@noble/hashes', false, noble256 && ((d) => noble256.sha256(d))],
  ['blake2b-256', 'hash-wasm', true, await used(3)],
  ['blake2b-256', '@noble/hashes', false, noble2 && ((d) => noble2.blake2b(d, { dkLen: 32 }))],
  ['(blake2b-512, not usable)', 'node:crypto', false, (d) => createHash('blake2b512').update(d).digest()],
];
console.log(`| algorithm | implementation | used | MiB/s, 4 KiB pieces | MiB/s, 16 KiB pieces |`);
console.log(`|---|---|---|---:|---:|`);
for (const [alg, impl, isUsed, f] of rows) {
  if (!f) { console.log(`| ${alg} | ${impl} | | not installed | not installed |`); continue; }
  const cells = [];
  for (const sz of [4096, 16384]) {
    let best = Infinity;
    for (let rep = 0; rep < 3; rep++) {
      const t = process.hrtime.bigint();
      for (let o = 0; o + sz <= N; o += sz) f(buf.subarray(o, o + sz));
      best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
    }
    cells.push((MIB / best).toFixed(0));
  }
  console.log(`| ${alg} | ${impl} | ${isUsed ? 'used' : ''} | ${cells[0]} | ${cells[1]} |`);
}
