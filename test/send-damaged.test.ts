import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flipTreeItems } from './helpers/damaged-images.js';
import { CLI, runCommands } from './helpers/image-harness.js';
import { withImage } from './helpers/image-mutate.js';
import { skipReason } from './helpers/oracle.js';

/**
 * The offline send is a reader of images too, and must end like the others on a damaged one: with a
 * stream, or with one error line and status 1 — no stack trace, no internal-error exit, no hang, bounded
 * output and memory (helpers/image-harness.ts judges). Images: btrfs-ts receives the shipped streams
 * (a full stream and its incremental: two read-only subvolumes, the second a snapshot of the first, so
 * they share tree blocks), then seeded random bit flips go into the items of one tree — mostly the sent
 * subvolume's, else its parent's, the extent tree's or the csum tree's — with the leaf checksums
 * recomputed, so the damage reaches the item parsers. Each damaged image is sent in full,
 * incrementally, and with --compressed-data; a stream sent with status 0 must then pass `verify` (CRCs,
 * structure, encoded data, path sanity: a well-formed stream, whatever the damage made of its content —
 * not `dump`, which refuses, as btrfs-progs does, times it cannot print, and a flipped bit in a time
 * makes one). Deterministic: a failing seed names a reproducible image. No kernel needed.
 * BTRFS_TS_SEND_DAMAGE_SEEDS=N runs seeds 1..N (default 12); KEEP=1 keeps the images and streams.
 */

const HAVE_DIST = existsSync(join(__dirname, '..', 'dist', 'cli', 'main.js'));
const STREAMS = join(__dirname, '..', 'streams');
/** Base images: the streams received one after the other, and the names of the subvolumes they make. */
const BASES = [
  { name: 'v1', streams: ['full-v1.stream', 'incr-v1.stream'], parent: 'full', child: 'incr' },
  { name: 'zstd', streams: ['zstd-v2.stream', 'incr-zstd-v2.stream'], parent: 'zstd', child: 'zstd-incr' },
];
const SEEDS = Array.from({ length: Number(process.env.BTRFS_TS_SEND_DAMAGE_SEEDS ?? 12) }, (_, i) => i + 1);

describe('send from damaged images: a stream or one error line', () => {
  if (!HAVE_DIST) {
    it('needs a build', () => skipReason('send-damaged', 'run `npm run build` first (bin/btrfs-ts.js needs dist/)'));
    return;
  }
  let work = '';
  const trees = new Map<string, { parent: bigint; child: bigint }>();
  beforeAll(async () => {
    work = mkdtempSync('/tmp/btrfs-ts-send-damaged-');
    for (const b of BASES) {
      const img = join(work, `${b.name}.img`);
      for (const s of b.streams) execFileSync(CLI, ['receive', '-q', '-f', join(STREAMS, s), img]);
      trees.set(b.name, await withImage(img, async (i) => ({ parent: (await i.subvolumeByPath(b.parent)).id, child: (await i.subvolumeByPath(b.child)).id })));
    }
  });
  const outcomes: string[] = [];
  afterAll(() => {
    // what the damage made of the sends: their outcomes, counted (the test checks how each ended)
    const counts = new Map<string, number>();
    for (const o of outcomes) for (const w of o.split(': ')[1]!.split(' ')) counts.set(w, (counts.get(w) ?? 0) + 1);
    console.log(`send-damaged: ${outcomes.length} images, ${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    if (work && !process.env.KEEP) rmSync(work, { recursive: true, force: true });
    else if (work) console.log('KEPT', work);
  });

  /** The three sends of `b.child` from `img` (full, -p, -p --compressed-data) and a verify of each stream. */
  function sendsOf(b: (typeof BASES)[number], img: string, out: (n: number) => string): { sends: [string, string[]][]; checks: [string, string[]][] } {
    const sends: [string, string[]][] = [
      ['send', ['send', '-q', '-f', out(1), img, b.child]],
      ['send -p', ['send', '-q', '-f', out(2), '-p', b.parent, img, b.child]],
      ['send -p --compressed-data', ['send', '-q', '--compressed-data', '-f', out(3), '-p', b.parent, img, b.child]],
    ];
    return { sends, checks: sends.map((c, i) => [`verify of ${c[0]}`, ['verify', '--json', '-f', out(i + 1)]]) };
  }

  for (const b of BASES) {
    // the yardstick: undamaged, every send gives a stream that verifies (else every check below could pass on errors alone)
    it(`${b.name}, undamaged`, async () => {
      const { sends, checks } = sendsOf(b, join(work, `${b.name}.img`), (n) => join(work, `${b.name}.${n}.stream`));
      const results = await runCommands([...sends, ...checks], 4 << 20);
      for (const r of results) expect([r.outcome, r.problems], `${r.command}: ${r.line ?? 'ok'}`).toEqual(['ok', []]);
      for (const r of results.slice(sends.length)) expect(JSON.parse(r.stdout).ok).toBe(true);
    });
    for (const seed of SEEDS) {
      it(`${b.name}, seed ${seed}`, async () => {
        const img = join(work, `${b.name}-${seed}.img`);
        execFileSync('cp', ['--sparse=always', join(work, `${b.name}.img`), img]);
        const ids = trees.get(b.name)!;
        // most seeds damage the sent subvolume; others the parent, the extent tree (the backrefs a clone
        // source is found by) or the csum tree; 1-4 bits
        const tree = [ids.child, ids.parent, ids.child, 2n, ids.child, 7n][seed % 6]!;
        await flipTreeItems(img, tree, seed, 1 + (seed % 4));
        const out = (n: number) => join(work, `${b.name}-${seed}.${n}.stream`);
        const { sends, checks } = sendsOf(b, img, out);
        const results = await runCommands([...sends, ...checks], 4 << 20);
        outcomes.push(`${b.name}-${seed}: ${results.slice(0, sends.length).map((r) => r.outcome === 'ok' ? 'ok' : r.line?.replace(/.*\[/, '[')).join(' ')}`);
        for (const r of results.slice(0, sends.length)) expect(r.problems, `${r.command}: ${r.line ?? 'ok'}`).toEqual([]);
        for (let i = 0; i < sends.length; i++) {
          const [sent, checked] = [results[i]!, results[sends.length + i]!];
          if (sent.outcome !== 'ok') {
            // a refused send leaves no file behind
            expect(existsSync(out(i + 1)), `${sent.command} failed (${sent.line}) and left its output`).toBe(false);
            continue;
          }
          // verify's report is its JSON on stdout (exit 1 and no error line when it finds problems): only how it ended is judged here
          expect(checked.problems.filter((p) => !p.startsWith('exit 1 with 0 error lines') && !p.startsWith('stderr:')), checked.command).toEqual([]);
          const problems = (JSON.parse(checked.stdout) as { problems: { kind: string; message: string }[] }).problems;
          // --compressed-data passes compressed extents through as stored, as the kernel's send does: an
          // inline extent's compressed bytes have no data checksum, so a flip there reaches the stream;
          // the protocol-1 send of the same subvolume, which decodes them, must then have refused
          const passed = sends[i]![1].includes('--compressed-data') ? problems.filter((p) => p.kind === 'encoded') : [];
          expect(problems.filter((p) => !passed.includes(p)), `${checked.command}: the stream of a successful send`).toEqual([]);
          if (passed.length) expect(results[0]!.outcome, `${passed[0]!.message}, yet the protocol-1 send decoded it`).not.toBe('ok');
        }
        if (process.env.KEEP) return;
        rmSync(img);
        for (let i = 1; i <= sends.length; i++) rmSync(out(i), { force: true });
      }, 120_000);
    }
  }
});
