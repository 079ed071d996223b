#!/usr/bin/env node
// Long-running mutation fuzzer for `receive` (see receive-fuzz-core.mjs for what is mutated and checked).
//   npm run build && node fuzz/receive-fuzz.mjs [--seed N] [--iterations N | --seconds S] [--check-every N]
//                                                [--out DIR] [--replay SEED:ITERATION]
// Every iteration is replayable from (seed, iteration). btrfs check runs after every failed receive and
// every --check-every-th successful one. Findings (crashes, time bounds, superblock written without a
// commit, btrfs check problems) are written to --out (default fuzz/findings/) as
// <kind>--<seed>-<iteration>.stream plus a .txt with the mutation, options and the message; they become
// named regression fixtures (test/hostile/) once understood. The loop runs in a worker thread: if one
// iteration makes no progress for --hang-seconds (default 60), it is recorded as a hang and the worker
// restarts with the next iteration.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};

if (isMainThread) {
  const seed = Number(opt('seed', String(Date.now() % 1_000_000)));
  const iterations = Number(opt('iterations', '0')) || Infinity;
  const seconds = Number(opt('seconds', iterations === Infinity ? '600' : '0')) || Infinity;
  const checkEvery = Number(opt('check-every', '20'));
  const hangSeconds = Number(opt('hang-seconds', '60'));
  const out = opt('out', new URL('./findings/', import.meta.url).pathname);
  const replay = opt('replay', undefined);
  const started = Date.now();
  const stats = { iterations: 0, ok: 0, failed: 0, checks: 0, findings: 0, codes: {} };
  let next = 0;
  let current;
  const finding = (kind, it, text, bytes) => {
    mkdirSync(out, { recursive: true });
    const base = join(out, `${kind}--${seed}-${it}`);
    if (bytes) writeFileSync(`${base}.stream`, bytes);
    writeFileSync(`${base}.txt`, text + '\n');
    stats.findings++;
    console.log(`FINDING ${kind} seed ${seed} iteration ${it}: ${text.split('\n')[0]}`);
  };
  const start = () => {
    const w = new Worker(new URL(import.meta.url), { workerData: { seed, from: next, checkEvery, replay } });
    let last = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - last < hangSeconds * 1000) return;
      clearInterval(watchdog);
      finding('hang', current?.it ?? next, `no progress for ${hangSeconds} s\n${current?.what ?? ''}`, current?.bytes);
      next = (current?.it ?? next) + 1;
      void w.terminate().then(start);
    }, 1000);
    w.on('message', (m) => {
      last = Date.now();
      if (m.type === 'start') current = m;
      else if (m.type === 'done') {
        stats.iterations++;
        next = m.it + 1;
        if (m.ok) stats.ok++;
        else {
          stats.failed++;
          stats.codes[m.code] = (stats.codes[m.code] ?? 0) + 1;
        }
        if (m.checked) stats.checks++;
        if (m.problem) finding(m.kind, m.it, `${m.problem}\n${current?.what ?? ''}`, current?.bytes);
        if (replay || stats.iterations >= iterations || Date.now() - started > seconds * 1000) {
          clearInterval(watchdog);
          void w.terminate();
          console.log(JSON.stringify({ seed, ...stats, seconds: Math.round((Date.now() - started) / 1000) }));
          process.exitCode = stats.findings ? 1 : 0;
        } else if (stats.iterations % 500 === 0) {
          console.log(`${stats.iterations} iterations, ${stats.failed} refused, ${stats.checks} btrfs checks, ${stats.findings} findings`);
        }
      }
    });
    w.on('error', (e) => {
      clearInterval(watchdog);
      finding('worker-crash', current?.it ?? next, String(e?.stack ?? e), current?.bytes);
      next = (current?.it ?? next) + 1;
      start();
    });
  };
  start();
} else {
  const { setup, mutate, runOne, rng, checkDevice, inputBytes } = await import('./receive-fuzz-core.mjs');
  const env = await setup();
  const dir = mkdtempSync(join(tmpdir(), 'btrfs-ts-fuzz-'));
  const { seed, checkEvery, replay } = workerData;
  try {
    for (let it = replay ? Number(replay.split(':')[1]) : workerData.from; ; it++) {
      const s = replay ? Number(replay.split(':')[0]) : seed;
      const r = rng(s * 1000003 + it);
      const input = mutate(env.corpus, r);
      const options = r() < 0.2 ? { forceDecompress: true } : r() < 0.25 ? { checkExtents: true } : {};
      const what = `stream ${input.name}, options ${JSON.stringify(options)}, mutations: ${input.ops.join('; ')}`;
      parentPort.postMessage({ type: 'start', it, what, bytes: inputBytes(input) });
      const res = await runOne(env, input, { options, timeLimitMs: 30_000 });
      let problem = res.problem;
      let kind = problem?.startsWith('crash') ? 'crash' : problem?.startsWith('time') ? 'slow' : 'invariant';
      let checked = false;
      if (!problem && (!res.ok || it % checkEvery === 0)) {
        checked = true;
        const p = checkDevice(res.dev, join(dir, 'scratch.img'));
        if (p.length) {
          problem = `btrfs check after ${res.ok ? 'a successful receive' : res.error.describe()}:\n${p.join('\n')}`;
          kind = 'check';
        }
      }
      if (replay) console.log(what, '\n', res.ok ? 'received' : res.error?.describe?.() ?? res.error, problem ?? '');
      parentPort.postMessage({ type: 'done', it, ok: res.ok, code: res.error?.code ?? (res.ok ? undefined : 'raw'), problem, kind, checked });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
