// Codec throughput on REAL kernel-written extents (test/fixtures/compress).
// Run: npx tsc -p . && node bench/codecs.mjs [seconds-per-case]
// Why: zlib can come from node:zlib (native) or fflate (pure JS); src/compress/zlib.ts uses the faster.
import { readFileSync } from 'node:fs';
import { gunzipSync, inflateRawSync, inflateSync, deflateSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import * as fflate from 'fflate';

const root = fileURLToPath(new URL('..', import.meta.url));
const fx = root + 'test/fixtures/compress/';
const manifest = JSON.parse(readFileSync(fx + 'manifest.json', 'utf8'));
const secs = Number(process.argv[2] ?? 1);
const codecs = await import(root + 'dist/compress/index.js');
await codecs.initCodecs();

const extents = manifest.extents.filter((r) => r.fixture && r.ramBytes === 131072);
const load = (r) => {
  const disk = new Uint8Array(readFileSync(fx + r.fixture));
  const plain = new Uint8Array(gunzipSync(readFileSync(fx + r.plainFile))).slice(r.fileOffset, r.fileOffset + r.ramBytes);
  return { ...r, disk, plain };
};

function bench(name, bytesPerOp, fn) {
  for (let i = 0; i < 5; i++) fn(); // warm-up
  let ops = 0;
  const t0 = process.hrtime.bigint();
  const limit = BigInt(Math.round(secs * 1e9));
  let dt = 0n;
  do {
    fn();
    ops++;
    dt = process.hrtime.bigint() - t0;
  } while (dt < limit);
  const mbps = (bytesPerOp * ops) / (Number(dt) / 1e9) / 1e6;
  console.log(`${name.padEnd(58)} ${mbps.toFixed(1).padStart(8)} MB/s (uncompressed)  ${ops} ops`);
  return mbps;
}

console.log(`# node ${process.version}, ${os.cpus()[0]?.model} x${os.cpus().length}, ${os.type()} ${os.release()}`);
const results = {};
for (const codec of ['zlib', 'lzo', 'zstd']) {
  for (const r of extents.filter((e) => e.path.startsWith(codec + '/')).map(load)) {
    const tag = `${codec} ${r.fixture} (${r.diskNumBytes}B disk)`;
    const type = r.compression;
    if (codec === 'zlib') {
      results[`${r.fixture} inflate node`] = bench(`${tag} inflateRawSync node:zlib`, r.ramBytes, () =>
        inflateRawSync(r.disk.subarray(2), { maxOutputLength: r.ramBytes }));
      results[`${r.fixture} inflate fflate`] = bench(`${tag} inflateSync fflate`, r.ramBytes, () =>
        fflate.inflateSync(r.disk.subarray(2), { out: new Uint8Array(r.ramBytes) }));
      bench(`${tag} inflateSync(zlib hdr) node:zlib`, r.ramBytes, () => inflateSync(r.disk));
      bench(`${tag} unzlibSync fflate`, r.ramBytes, () => fflate.unzlibSync(r.disk));
      for (const level of [1, 3, 9]) {
        results[`${r.fixture} deflate${level} node`] = bench(`${tag} deflateSync L${level} node:zlib`, r.ramBytes, () =>
          deflateSync(r.plain, { level }));
        results[`${r.fixture} deflate${level} fflate`] = bench(`${tag} zlibSync L${level} fflate`, r.ramBytes, () =>
          fflate.zlibSync(r.plain, { level }));
      }
    }
    bench(`${tag} decompressExtent (btrfs-ts)`, r.ramBytes, () => codecs.decompressExtent(type, r.disk, r.ramBytes, 4096));
    bench(`${tag} compressExtent (btrfs-ts)`, r.ramBytes, () => codecs.compressExtent(type, r.plain, 4096));
  }
}
