#!/usr/bin/env node
// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function, top N, as a Markdown table.
// Usage: node bench/profile-top.mjs FILE.cpuprofile [N]
import { readFileSync } from 'node:fs';

const [file, nArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: profile-top.mjs FILE.cpuprofile [N]');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
// Samples count per node id; time deltas give each sample's weight in microseconds.
const selfUs = new Map();
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
const agg = new Map();
for (const [id, us] of selfUs) {
  const cf = byId.get(id).callFrame;
  const where = cf.url ? `${cf.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}` : '';
  const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
  agg.set(key, (agg.get(key) ?? 0) + us);
}
const top = [...agg].sort((a, b) => b[1] - a[1]).slice(0, Number(nArg ?? 15));
console.log(`total sampled: ${(total / 1e6).toFixed(2)} s\n`);
console.log('| self ms | % | function |');
console.log('|---:|---:|---|');
for (const [k, us] of top) console.log(`| ${(us / 1000).toFixed(0)} | ${((100 * us) / total).toFixed(1)} | \`${k}\` |`);
