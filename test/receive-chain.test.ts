import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kernelImage, maskRootTime, rootTimeIsReceiveTime, seedImages, sh } from './helpers/kernel-receive.js';
import { mutateTree, rng } from './helpers/random-fs.js';
import { checkProblems, manifestOf, mount, skipReason, tmpDir } from './image-write-helpers.js';

/**
 * Chains of incrementals received into one image, the kernel writing to that image between receives, the
 * kernel's receive as the oracle (issue 11). A kernel-made source sends generation 0 whole and generations
 * 1..G+1 each with -p the one before. btrfs-ts receives them one by one into one image; between two
 * receives the kernel mounts that image rw, checks what is there, writes to a subvolume of its own and to
 * a writable snapshot of the newest received snapshot (blocks shared with trees btrfs-ts wrote), takes a
 * read-only snapshot, and sometimes deletes an older writable snapshot. `btrfs check --readonly
 * --check-data-csum` after every step (one run does the read-only check and the data checksums). At the
 * end, on the image with its many snapshots: kernel `send -p` between two received snapshots (received by
 * the kernel elsewhere, equal to ours), scrub, quota enable + rescan, full balance, `subvolume delete` of
 * a snapshot in the middle of the chain + `subvolume sync`, check, every tree still as recorded; then
 * btrfs-ts on the image the kernel balanced: with quotas on it must refuse cleanly (image unchanged), with
 * quotas disabled by the kernel it receives one more generation.
 * Seeds: BTRFS_TS_CHAIN_SEEDS=N (default 1) or BTRFS_TS_CHAIN_SEED_LIST="3,7"; generations:
 * BTRFS_TS_CHAIN_GENERATIONS (default 10).
 */
const BIN = join(__dirname, '..', 'bin', 'btrfs-ts.js');
const GENERATIONS = Number(process.env.BTRFS_TS_CHAIN_GENERATIONS ?? 10);
const SEEDS = process.env.BTRFS_TS_CHAIN_SEED_LIST
  ? process.env.BTRFS_TS_CHAIN_SEED_LIST.split(',').map(Number)
  : Array.from({ length: Number(process.env.BTRFS_TS_CHAIN_SEEDS ?? 1) }, (_, i) => i + 1);
const why = skipReason('mount');
if (why) console.warn(`SKIP receive chain test: ${why}`);
const work = tmpDir('btrfs-ts-chain-');
// BTRFS_TS_KEEP=1 keeps the streams and images of failing seeds for a closer look
afterAll(() => { if (!process.env.BTRFS_TS_KEEP) rmSync(work, { recursive: true, force: true }); });

const gen = (g: number) => `g${String(g).padStart(2, '0')}`;

/** `btrfs check --readonly --check-data-csum`: the problems it reports (none when clean). */
function checkImage(img: string): string[] {
  const r = spawnSync('btrfs', ['check', '--readonly', '--check-data-csum', img], { encoding: 'utf8' });
  const out = `${r.stdout}\n${r.stderr}`;
  const problems = checkProblems(out).concat(out.split('\n').filter((l) => /are different|qgroup.*inconsistent/i.test(l)));
  return r.status === 0 ? problems : [`exit ${r.status}`, ...problems, out.slice(-2000)];
}

function receive(stream: string, img: string): { status: number | null; stderr: string } {
  const r = spawnSync('node', [BIN, 'receive', '-q', '-f', stream, img], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

describe.skipIf(!!why)('chains of incrementals into one image, kernel writes and snapshots between receives', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${GENERATIONS} generations`, async () => {
      const r = rng(seed * 104729);
      const compress = r.pick(['zstd', 'lzo', 'zlib', '']);
      const proto = r.pick(['1', '2']);
      const what = `seed ${seed}, compress=${compress || 'none'}, proto ${proto}`;
      const { dir, srcImg, refImg, ourImg } = seedImages(work, seed);
      // generation 0..G+1 streams from the source; the last one is received after the kernel's balance
      const last = GENERATIONS + 1;
      const streams: string[] = [];
      const src = mount(srcImg, compress ? `compress-force=${compress}` : 'rw');
      try {
        const v = join(src.dir, 'vol');
        sh('btrfs', ['subvolume', 'create', v]);
        mutateTree(v, seed, 80);
        const extra = proto === '2' ? ['--proto', '2', '--compressed-data'] : ['--proto', '1'];
        for (let g = 0; g <= last; g++) {
          if (g > 0) mutateTree(v, seed * 1000 + g, 12);
          sh('btrfs', ['subvolume', 'snapshot', '-r', v, join(src.dir, gen(g))]);
          const file = join(dir, `${gen(g)}.stream`);
          sh('btrfs', ['send', '-q', ...extra, ...(g > 0 ? ['-p', join(src.dir, gen(g - 1))] : []), '-f', file, join(src.dir, gen(g))]);
          streams.push(file);
        }
      } finally {
        src.umount();
      }
      // the oracle: the kernel receives the same streams
      const want: string[][] = [];
      const ref = mount(refImg);
      try {
        for (const s of streams) sh('btrfs', ['receive', '-q', '-f', s, ref.dir]);
        for (let g = 0; g <= last; g++) want.push(await manifestOf(join(ref.dir, gen(g))));
      } finally {
        ref.umount();
      }
      const fix = await Promise.all(streams.map(async (s, g) => (g > 0 && (await rootTimeIsReceiveTime(s)) ? maskRootTime : (x: string[]) => x)));
      // what the kernel wrote itself, recorded when it wrote it: name -> manifest
      const kernelMade = new Map<string, string[]>();
      const received = new Set<number>();
      // received generations equal the kernel's receive of them, kernel-made trees what it wrote: between
      // receives the newest of each (btrfs check covers the rest), at the end all of them
      const expectTrees = async (root: string, when: string, all = true) => {
        const newest = <T>(xs: T[]) => (all ? xs : xs.slice(-1));
        for (const g of newest([...received])) {
          const got = await manifestOf(join(root, gen(g)));
          expect(fix[g]!(got), `${gen(g)} ${when} (${what})`).toEqual(fix[g]!(want[g]!));
        }
        const made = ['w', 'k'].flatMap((kind) => newest([...kernelMade].filter(([name]) => name.startsWith(kind))));
        for (const [name, m] of made) expect(await manifestOf(join(root, name)), `kernel-made ${name} ${when} (${what})`).toEqual(m);
      };
      const ourReceive = (g: number) => {
        const rr = receive(streams[g]!, ourImg);
        expect(rr.stderr, `btrfs-ts receive ${gen(g)} (${what})`).toBe('');
        expect(rr.status).toBe(0);
        expect(checkImage(ourImg), `btrfs check after receiving ${gen(g)} (${what})`).toEqual([]);
        received.add(g);
      };

      ourReceive(0);
      for (let g = 1; g <= GENERATIONS; g++) {
        // the kernel's turn: check what btrfs-ts wrote, write beside it and into blocks shared with it
        const k = mount(ourImg, compress ? `compress=${compress}` : 'rw');
        try {
          await expectTrees(k.dir, `before generation ${g}`, false);
          const kv = join(k.dir, 'kvol');
          if (g === 1) sh('btrfs', ['subvolume', 'create', kv]);
          mutateTree(kv, seed * 7000 + g, 8);
          const w = `w${String(g - 1).padStart(2, '0')}`;
          sh('btrfs', ['subvolume', 'snapshot', join(k.dir, gen(g - 1)), join(k.dir, w)]);
          mutateTree(join(k.dir, w), seed * 9000 + g, 6);
          const ks = `k${String(g).padStart(2, '0')}`;
          sh('btrfs', ['subvolume', 'snapshot', '-r', kv, join(k.dir, ks)]);
          sh('sync', ['-f', k.dir]);
          kernelMade.set(w, await manifestOf(join(k.dir, w)));
          kernelMade.set(ks, await manifestOf(join(k.dir, ks)));
          // every third generation the kernel drops an older writable snapshot (its shared blocks' refs)
          const old = `w${String(g - 3).padStart(2, '0')}`;
          if (g % 3 === 0 && kernelMade.delete(old)) {
            sh('btrfs', ['subvolume', 'delete', join(k.dir, old)]);
            sh('btrfs', ['subvolume', 'sync', k.dir]);
          }
        } finally {
          k.umount();
        }
        expect(checkImage(ourImg), `btrfs check after the kernel's writes before ${gen(g)} (${what})`).toEqual([]);
        ourReceive(g);
      }

      // the image now holds G+1 received snapshots: the kernel's maintenance on it
      const mid = Math.floor(GENERATIONS / 2);
      const m = mount(ourImg);
      try {
        await expectTrees(m.dir, 'at the end of the chain');
        // kernel send -p between two received snapshots, received by the kernel elsewhere
        const other = join(dir, 'other.img');
        kernelImage(other);
        const o = mount(other);
        try {
          const full = join(dir, 'k-full.stream');
          const inc = join(dir, 'k-inc.stream');
          sh('btrfs', ['send', '-q', '-f', full, join(m.dir, gen(1))]);
          sh('btrfs', ['send', '-q', '-p', join(m.dir, gen(1)), '-f', inc, join(m.dir, gen(GENERATIONS))]);
          sh('btrfs', ['receive', '-q', '-f', full, o.dir]);
          sh('btrfs', ['receive', '-q', '-f', inc, o.dir]);
          const f = (await rootTimeIsReceiveTime(inc)) ? maskRootTime : (x: string[]) => x;
          expect(f(await manifestOf(join(o.dir, gen(GENERATIONS)))), `kernel send -p ${gen(1)} ${gen(GENERATIONS)} of our image (${what})`)
            .toEqual(f(await manifestOf(join(m.dir, gen(GENERATIONS)))));
        } finally {
          o.umount();
        }
        const scrub = spawnSync('btrfs', ['scrub', 'start', '-B', m.dir], { encoding: 'utf8' });
        expect(scrub.status, `scrub (${what}): ${scrub.stdout}${scrub.stderr}`).toBe(0);
        expect(scrub.stdout + scrub.stderr).toMatch(/no errors found/);
        sh('btrfs', ['quota', 'enable', m.dir]);
        sh('btrfs', ['quota', 'rescan', '-w', m.dir]);
        expect(sh('btrfs', ['qgroup', 'show', m.dir])).toMatch(/0\/5\s/);
        sh('btrfs', ['balance', 'start', '--full-balance', m.dir]);
        sh('btrfs', ['subvolume', 'delete', join(m.dir, gen(mid))]);
        sh('btrfs', ['subvolume', 'sync', m.dir]);
        received.delete(mid);
      } finally {
        m.umount();
      }
      expect(checkImage(ourImg), `btrfs check after scrub, qgroup rescan, balance, delete of ${gen(mid)} (${what})`).toEqual([]);
      // btrfs-ts again, on the image the kernel balanced, quotas still on: it marks the qgroups
      // inconsistent (check notes it, no error); the kernel's rescan recounts them and check verifies them
      const again = receive(streams[last]!, ourImg);
      expect(again.stderr, `btrfs-ts receive ${gen(last)} with quotas on (${what})`).toBe('');
      expect(again.status).toBe(0);
      received.add(last);
      const noted = spawnSync('btrfs', ['check', '--readonly', ourImg], { encoding: 'utf8' });
      expect(noted.status, noted.stdout + noted.stderr).toBe(0);
      expect(noted.stdout, 'qgroups marked inconsistent').toMatch(/Rescan hasn't been initial/);
      const q = mount(ourImg);
      try {
        await expectTrees(q.dir, `after the kernel's maintenance and receiving ${gen(last)}`);
        sh('btrfs', ['quota', 'rescan', '-w', q.dir]);
      } finally {
        q.umount();
      }
      expect(checkImage(ourImg), `btrfs check after the rescan (${what})`).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
    }, 900_000);
  }
});
