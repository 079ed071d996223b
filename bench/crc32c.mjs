#!/usr/bin/env node
// CRC32C engines in one process, interleaved: the native @node-rs/crc32 (CPU crc32 instruction) as
// src/util/crc32c.ts calls it, our slice-by-16 tables (WebAssembly for >= 256 bytes, the fallback) and the
// JS loop, on 4 KiB pieces (receive's per-sector CRCs) and 1 MiB buffers (dump's command CRCs), in GB/s.
// Each round measures every engine once; the median of the rounds is reported, so load from other jobs
// hits all engines alike. Rewrites the "crc32c" section of docs/performance.md.
// Usage: npx tsc -p . && node bench/crc32c.mjs [ROUNDS]
import { execSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

const root = fileURLToPath(new URL('..', import.meta.url));
const rounds = Number(process.argv[2] ?? 7);
const load0 = os.loadavg().map((x) => x.toFixed(2)).join(' ');
const engine = await import(root + 'dist/util/crc32c.js');
const tables = await import(root + 'dist/util/crc32c-slice16.js');
if (engine.crc32cEngine !== 'native') {
  console.error('crc32c.mjs: the native engine did not load here (@node-rs/crc32 missing for this platform?)');
  process.exit(1);
}

const buf = new Uint8Array(1 << 20);
for (let i = 0; i < buf.length; i++) buf[i] = (i * 2654435761) >>> 24;
const VOLUME = 64 << 20; // bytes per engine per round
const engines = {
  native: (d) => engine.crcUpdate(0, d),
  'tables (WebAssembly slice-by-16, the fallback)': (d) => tables.crcUpdate(0, d),
  'JS slice-by-16': (d) => tables.crcUpdateJs(0, d),
};
const sizes = [4096, 1 << 20];
const runs = new Map(); // "engine|size" -> GB/s per round
for (let r = 0; r < rounds + 1; r++) {
  for (const size of sizes) {
    for (const [name, f] of Object.entries(engines)) {
      const t0 = process.hrtime.bigint();
      let x = 0;
      for (let n = 0, o = 0; n < VOLUME; n += size, o = (o + size) % buf.length) x ^= f(buf.subarray(o, o + size));
      const gbs = VOLUME / Number(process.hrtime.bigint() - t0);
      if (x === 0.5) console.log(x); // keeps the result alive
      if (r > 0) (runs.get(`${name}|${size}`) ?? runs.set(`${name}|${size}`, []).get(`${name}|${size}`)).push(gbs); // round 0 warms up
    }
  }
}
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
const cpu = os.cpus()[0]?.model ?? '?';
const lines = [
  '## crc32c: native engine vs the tables (fallback)',
  '',
  `Machine: ${os.cpus().length} CPUs (${cpu}), node ${process.version}, btrfs-ts ${execSync('git rev-parse --short HEAD', { cwd: root }).toString().trim()}, ` +
    `${new Date().toISOString().slice(0, 10)}. Load average at start: ${load0}, at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (shared machine).`,
  '',
  `Command: \`node bench/crc32c.mjs ${rounds}\` — one process, ${VOLUME >> 20} MiB per engine and size per round, engines interleaved, median of ${rounds} rounds (GB/s, raw CRC32C over a 1 MiB buffer cut into pieces of the size shown).`,
  '',
  '| engine | 4 KiB pieces | 1 MiB pieces | vs tables (4 KiB / 1 MiB) |',
  '|---|---:|---:|---:|',
];
const tab = 'tables (WebAssembly slice-by-16, the fallback)';
for (const name of Object.keys(engines)) {
  const a = median(runs.get(`${name}|4096`)), b = median(runs.get(`${name}|${1 << 20}`));
  const ta = median(runs.get(`${tab}|4096`)), tb = median(runs.get(`${tab}|${1 << 20}`));
  lines.push(`| ${name} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${(a / ta).toFixed(2)}× / ${(b / tb).toFixed(2)}× |`);
}
const out = lines.join('\n') + '\n';
console.log(out);
const tmp = `${os.tmpdir()}/crc32c-section.${process.pid}.md`;
writeFileSync(tmp, out);
execSync(`node ${root}bench/write-section.mjs ${root}docs/performance.md crc32c ${tmp} && rm -f ${tmp}`, { stdio: 'inherit' });
