import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, STREAMS, checkImage, copyImage, errorLine, outcome, receiveCli, stateBySubvol } from './hostile/harness.js';
import { skipReason, tmpDir } from './image-write-helpers.js';
import { undoPath } from '../src/io/undo-log.js';
import { recoverUndo } from '../src/io/undo-restore.js';
import { createHash } from 'node:crypto';

/**
 * Faults during `btrfs-ts receive`: the process killed (-9) at every kind of moment, write errors (a full
 * filesystem, injected EIO/ENOSPC), Ctrl-C. Afterwards the image passes btrfs check and holds the state
 * before or complete new subvolumes — never half of one. strace's fault injection places the kill or the
 * error exactly at the N-th pwrite64/fsync of the image (data extents, tree blocks, each superblock copy).
 * FAULTS_FULL=1 tries every write instead of a seeded sample.
 */
const FULL = process.env.FAULTS_FULL === '1';
const why = skipReason('progs');
const haveStrace = spawnSync('strace', ['-V']).status === 0;
if (why) console.warn(`SKIP fault tests: ${why}`);
if (!haveStrace) console.warn('SKIP exact fault injection: strace is not installed (apt-get install strace)');
const mountWhy = skipReason('mount');
if (mountWhy) console.warn(`SKIP full-filesystem and mounted-image fault tests: ${mountWhy}`);

const work = tmpDir('btrfs-ts-faults-');
afterAll(() => rmSync(work, { recursive: true, force: true }));
const base = join(work, 'base.img');
const STREAM = join(STREAMS, 'multi-v1.stream'); // two subvolumes: two commits
let before = new Map<string, string>();
let complete = new Map<string, string>();
let caseNo = 0;

/** Deterministic pseudo-random choices (the seed is printed so a failing pick can be replayed). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32);
}
const SEED = Number(process.env.FAULTS_SEED ?? Date.now() % 100_000);

const sha256 = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

function fresh(): string {
  const image = join(work, `case-${++caseNo}.img`);
  copyImage(base, image);
  return image;
}

/** Runs the receive under strace, injecting `action` at the n-th call of `syscall`. */
function injected(image: string, stream: string, syscall: string, n: number, action: string): ReturnType<typeof spawnSync> {
  return spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', '-e', `trace=${syscall}`, '-e', `inject=${syscall}:${action}:when=${n}`,
    'node', BIN, 'receive', '-q', '-f', stream, image], { encoding: 'utf8', timeout: 60_000 });
}

/** How many times the receive calls `syscall` on its way (same base, same stream: deterministic). */
function count(stream: string, syscall: string): number {
  const image = fresh();
  const trace = join(work, `trace-${caseNo}`);
  const r = spawnSync('strace', ['-f', '-qq', '-o', trace, '-e', `trace=${syscall}`, 'node', BIN, 'receive', '-q', '-f', stream, image], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return readFileSync(trace, 'utf8').split('\n').filter((l) => l.includes(`${syscall}(`)).length;
}

async function expectConsistent(image: string): Promise<string[]> {
  expect(checkImage(image)).toEqual([]);
  return outcome(await stateBySubvol(image), before, complete);
}

beforeAll(async () => {
  if (why) return;
  console.warn(`faults: FAULTS_SEED=${SEED}`);
  const r = receiveCli(base, join(STREAMS, 'sample.stream'));
  expect(r.status, r.stderr).toBe(0);
  before = await stateBySubvol(base);
  expect([...before.keys()]).toEqual(['sample']);
  const ref = fresh();
  const r2 = receiveCli(ref, STREAM);
  expect(r2.status, r2.stderr).toBe(0);
  complete = await stateBySubvol(ref);
  expect([...complete.keys()].sort()).toEqual(['m1', 'm2', 'sample']);
});

describe.skipIf(!!why)('faults during receive never leave half a subvolume', () => {
  describe.skipIf(!haveStrace)('kill -9 exactly at the n-th write or fsync', () => {
    it('pwrite64: data extents, tree blocks, every superblock copy', async () => {
      const total = count(STREAM, 'pwrite64');
      expect(total).toBeGreaterThan(10);
      const rand = rng(SEED);
      // the last writes of each commit are the superblocks: always try the tail; sample the rest
      const picks = new Set<number>(FULL ? Array.from({ length: total }, (_, i) => i + 1) : [1, total - 2, total - 1, total]);
      while (picks.size < Math.min(total, FULL ? total : 12)) picks.add(1 + Math.floor(rand() * total));
      const seen = new Map<string, number>();
      const baseHash = sha256(base);
      for (const n of [...picks].sort((a, b) => a - b)) {
        const image = fresh();
        const r = injected(image, STREAM, 'pwrite64', n, 'signal=KILL');
        expect(r.status === 0, `write #${n}: the receive was not killed`).toBe(false);
        const added = (await expectConsistent(image)).join('+') || 'before';
        seen.set(added, (seen.get(added) ?? 0) + 1);
        // the rollback journal the killed receive left puts the image back byte for byte when no commit
        // happened (the next receive does this first); after a commit it is dropped
        const recovered = recoverUndo(image);
        expect(existsSync(undoPath(image))).toBe(false);
        expect(await expectConsistent(image)).toEqual(added === 'before' ? [] : added.split('+'));
        if (added === 'before') expect(sha256(image), `write #${n}: ${recovered}`).toBe(baseHash);
        // kill -9 leaves the lock behind; it names a dead pid and the next receive takes it over
        expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(true);
        rmSync(image);
        rmSync(`${image}.btrfs-ts.lock`, { force: true });
      }
      console.warn(`kill -9 at pwrite64 #${[...picks].sort((a, b) => a - b).join(',')} of ${total}: outcomes ${JSON.stringify(Object.fromEntries(seen))}`);
      // the picks reach both sides of the commits
      expect(seen.get('before')).toBeGreaterThan(0);
      expect(seen.get('m1+m2') ?? 0).toBeGreaterThan(0);
    });

    it('fsync: before and after each superblock write', async () => {
      const total = count(STREAM, 'fsync');
      expect(total).toBeGreaterThanOrEqual(4);
      for (let n = 1; n <= total; n++) {
        const image = fresh();
        const r = injected(image, STREAM, 'fsync', n, 'signal=KILL');
        expect(r.status).not.toBe(0);
        await expectConsistent(image);
        rmSync(image, { force: true });
        rmSync(`${image}.btrfs-ts.lock`, { force: true });
      }
    });

    it('after a kill the stale lock is taken over and the receive completes', async () => {
      const image = fresh();
      const r = injected(image, STREAM, 'pwrite64', 3, 'signal=KILL');
      expect(r.status).not.toBe(0);
      expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(true);
      const again = receiveCli(image, STREAM);
      expect(again.stderr).toBe('');
      expect(again.status).toBe(0);
      expect(await expectConsistent(image)).toEqual(['m1', 'm2']);
      expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
    });

    it('a receive into a new image killed, the half-made image removed by hand: the next receive there works', async () => {
      const image = join(work, `new-${++caseNo}.img`);
      const r = injected(image, STREAM, 'pwrite64', 10, 'signal=KILL');
      expect(r.status).not.toBe(0);
      expect(existsSync(undoPath(image))).toBe(true);
      rmSync(image);
      const again = receiveCli(image, STREAM);
      expect(again.stderr).toBe('');
      expect(again.status).toBe(0);
      expect(checkImage(image)).toEqual([]);
      expect(existsSync(undoPath(image))).toBe(false);
      expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
    });
  });

  describe.skipIf(!haveStrace)('write errors (EIO, ENOSPC) are reported and change nothing committed', () => {
    it('at data writes, tree blocks and superblocks: exit 1, one error line, a consistent image', async () => {
      const total = count(STREAM, 'pwrite64');
      for (const n of [1, Math.floor(total / 2), total - 1, total]) {
        for (const errno of ['ENOSPC', 'EIO']) {
          const image = fresh();
          const r = injected(image, STREAM, 'pwrite64', n, `error=${errno}`);
          expect(r.status, `${errno} at write #${n}`).toBe(1);
          expect(r.stderr).toMatch(new RegExp(`^btrfs-ts: ERROR: .*${errno === 'EIO' ? 'i/o error' : 'no space left'}.*\\[IMAGE_WRITE\\]\\n$`, 'i'));
          // multi-v1 commits twice: a failure in the second subvolume keeps the first
          const kept = await expectConsistent(image);
          if (kept.length === 0) expect(sha256(image), `${errno} at write #${n}`).toBe(sha256(base));
          expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
          rmSync(image);
        }
      }
      const image = fresh();
      const r = injected(image, STREAM, 'fsync', 1, 'error=EIO');
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^btrfs-ts: ERROR: at byte \d+, command #\d+, BTRFS_SEND_C_END: cannot make the image durable \(fsync\): EIO.*\[IMAGE_FLUSH\]\n$/);
      expect(await expectConsistent(image)).toEqual([]);
    });

    it('a mirror superblock write fails after the primary one was written: the journal puts back the primary too, byte for byte', async () => {
      // a 2 GiB preallocation makes the device grow past its old end; the new primary superblock refers to
      // chunks out there: cutting the file back alone would destroy it, so the old primary comes back too
      const stream = join(work, 'grow.stream');
      const { encodeCommand, encodeStreamHeader } = await import('../src/stream/writer.js');
      const te = new TextEncoder();
      const cmds = [
        { cmd: 1, path: te.encode('grown'), uuid: new Uint8Array(16).fill(7), ctransid: 1n },
        { cmd: 3, path: te.encode('f'), ino: 257n },
        { cmd: 23, path: te.encode('f'), mode: 0, fileOffset: 0n, size: 2n << 30n },
        { cmd: 21 },
      ] as const;
      writeFileSync(stream, Buffer.concat([encodeStreamHeader(2), ...cmds.map((c) => encodeCommand(c, 2))]));
      const traceImg = fresh();
      const trace = join(work, 'grow.trace');
      expect(spawnSync('strace', ['-f', '-qq', '-o', trace, '-e', 'trace=pwrite64', 'node', BIN, 'receive', '-q', '-f', stream, traceImg]).status).toBe(0);
      const writes = readFileSync(trace, 'utf8').split('\n').filter((l) => l.includes('pwrite64('));
      const mirror = writes.findLastIndex((l) => /, 4096, 67108864\) = /.test(l)) + 1;
      expect(mirror).toBeGreaterThan(1);
      expect(writes[mirror - 2]).toMatch(/, 4096, 65536\) = /);
      const image = fresh();
      const sizeBefore = statSync(image).size;
      const hashBefore = sha256(image);
      const r = injected(image, stream, 'pwrite64', mirror, 'error=EIO');
      expect(r.status).toBe(1);
      expect(statSync(image).size).toBe(sizeBefore);
      expect(sha256(image)).toBe(hashBefore);
      expect(checkImage(image)).toEqual([]);
      expect([...(await stateBySubvol(image)).keys()].sort()).toEqual(['sample']);
    });
  });

  it('kill -9 and SIGINT at random moments of a real receive', async () => {
    const rand = rng(SEED + 1);
    const stream = join(STREAMS, 'full-v1.stream');
    const full = fresh();
    expect(receiveCli(full, stream).status).toBe(0);
    const fullState = await stateBySubvol(full);
    const t0 = Date.now();
    receiveCli(fresh(), stream);
    const duration = Date.now() - t0;
    const outcomes: string[] = [];
    for (let i = 0; i < (FULL ? 30 : 6); i++) {
      const signal = i % 2 === 0 ? 'SIGKILL' : 'SIGINT';
      const image = fresh();
      const child = spawn('node', [BIN, 'receive', '-q', '-f', stream, image], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const delay = Math.floor(rand() * duration * 1.1);
      const done = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
      setTimeout(() => child.kill(signal), delay);
      const code = await done;
      expect(checkImage(image)).toEqual([]);
      const added = outcome(await stateBySubvol(image), before, fullState);
      outcomes.push(`${signal}@${delay}ms:${added.join('+') || 'before'}`);
      if (signal === 'SIGINT' && code !== 0 && code !== null) {
        // Ctrl-C stops at the next command like any error: one line, the lock is released, status 130
        expect(code).toBe(130);
        expect(stderr).toMatch(errorLine({ code: 'INTERRUPTED' }));
        expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
      }
      rmSync(image, { force: true });
      rmSync(`${image}.btrfs-ts.lock`, { force: true });
    }
    console.warn(`random kills (receive takes ~${duration} ms): ${outcomes.join(' ')}`);
  });
});

describe.skipIf(!!why || !!mountWhy)('the image lives on a filesystem that fills up; the image is mounted', () => {
  const mounts: string[] = [];
  const dirs: string[] = [];
  afterAll(() => {
    for (const m of mounts.reverse()) spawnSync('umount', [m]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('tmpfs full during the receive: exit 1 with ENOSPC, the image as before', async () => {
    const dir = tmpDir('btrfs-ts-full-');
    dirs.push(dir);
    const used = statSync(base).blocks * 512;
    // room for the base image and ~300 KiB: full-v1 needs more than that for its data alone
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil((used + 300 * 1024) / 4096) * 4096}`, 'tmpfs', dir]).status).toBe(0);
    mounts.push(dir);
    const image = join(dir, 'img');
    copyImage(base, image);
    const r = receiveCli(image, join(STREAMS, 'full-v1.stream'));
    expect(r.status).toBe(1);
    expect(sha256(image)).toBe(sha256(base));
    expect(r.stderr).toMatch(/^btrfs-ts: ERROR: .*(no space left|ENOSPC).*\[IMAGE_WRITE\]\n$/i);
    expect(checkImage(image)).toEqual([]);
    expect(outcome(await stateBySubvol(image), before, before)).toEqual([]);
    expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
  });

  it('an image the kernel has mounted is refused and left alone', async () => {
    const image = fresh();
    const dir = tmpDir('btrfs-ts-mnt-');
    dirs.push(dir);
    expect(spawnSync('mount', ['-o', 'loop', image, dir]).status).toBe(0);
    mounts.push(dir);
    const r = receiveCli(image, STREAM);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^btrfs-ts: ERROR: .* is mounted through \/dev\/loop\d+: unmount it first \[IMAGE_MOUNTED\]\n$/);
    // also through a symlink to it
    const link = join(work, 'link.img');
    spawnSync('ln', ['-sf', image, link]);
    expect(receiveCli(link, STREAM).stderr).toMatch(/\[IMAGE_MOUNTED\]/);
    // reading it works, with a warning: ls, and a send whose stream verifies
    const warned = /^btrfs-ts: WARNING: .* is mounted through \/dev\/loop\d+: reading the state of the kernel's last commit to it\n$/;
    const ls = spawnSync('node', [BIN, 'ls', image], { encoding: 'utf8' });
    expect([ls.status, ls.stdout, ls.stderr]).toEqual([0, 'sample\n', expect.stringMatching(warned)]);
    const out = join(work, 'from-mounted.stream');
    const send = spawnSync('node', [BIN, 'send', '-q', '-f', out, image, 'sample'], { encoding: 'utf8' });
    expect([send.status, send.stderr]).toEqual([0, expect.stringMatching(warned)]);
    expect(spawnSync('node', [BIN, 'verify', '-f', out], { encoding: 'utf8' }).status).toBe(0);
    expect(spawnSync('umount', [dir]).status).toBe(0);
    mounts.pop();
    expect(checkImage(image)).toEqual([]);
    expect(outcome(await stateBySubvol(image), before, before)).toEqual([]);
  });
});

describe.skipIf(!!why)('Ctrl-C while the receive waits for more input', () => {
  async function interrupt(image: string, upTo: number, ready: () => Promise<boolean>): Promise<string> {
    const child = spawn('node', [BIN, 'receive', '-q', image], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    child.stdin.write(readFileSync(STREAM).subarray(0, upTo));
    for (let i = 0; i < 100 && !(await ready()); i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    child.stdin.destroy();
    expect(stderr).toMatch(errorLine({ code: 'INTERRUPTED' }));
    expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
    return stderr;
  }

  it('existing image, in the middle of the second subvolume: the first stays, the second never appears', async () => {
    const image = fresh();
    // m1 ends at byte 4120 (its END), m2 is cut at 6000
    await interrupt(image, 6000, async () => (await stateOrNull(image)) !== null);
    expect(checkImage(image)).toEqual([]);
    expect(outcome(await stateBySubvol(image), before, complete)).toEqual(['m1']);
  });

  it('new image, in the middle of the first subvolume: no image is left behind', async () => {
    const image = join(work, `new-${++caseNo}.img`);
    await interrupt(image, 3000, async () => existsSync(`${image}.btrfs-ts.lock`));
    expect(existsSync(image)).toBe(false);
  });
});

/** The subvolumes of an image that has m1 committed, or null while it has not. */
async function stateOrNull(image: string): Promise<string[] | null> {
  if (!existsSync(image)) return null;
  try {
    const s = await stateBySubvol(image);
    return s.has('m1') ? [...s.keys()] : null;
  } catch {
    return null;
  }
}

describe.skipIf(!!why)('the lock file', () => {
  const stat = (pid: number) => { const t = readFileSync(`/proc/${pid}/stat`, 'utf8'); return t.slice(t.lastIndexOf(')') + 2).split(' ')[19]; };

  it('a live writer (pid and start time match) refuses; a recycled pid (start time differs) or a dead one is taken over', async () => {
    const sleeper = spawn('sleep', ['30']);
    try {
      const image = fresh();
      const lock = `${image}.btrfs-ts.lock`;
      writeFileSync(lock, `${sleeper.pid} ${stat(sleeper.pid!)}\n`);
      let r = receiveCli(image, STREAM);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`is being written by process ${sleeper.pid} .*\\[IMAGE_LOCKED\\]\\n$`));
      // the old format (pid only) of a live process: refused too
      writeFileSync(lock, `${sleeper.pid}\n`);
      expect(receiveCli(image, STREAM).stderr).toMatch(/\[IMAGE_LOCKED\]/);
      expect(outcome(await stateBySubvol(image), before, complete)).toEqual([]);
      // the same pid, another start time: the writer is gone and its pid was reused
      writeFileSync(lock, `${sleeper.pid} 1\n`);
      r = receiveCli(image, STREAM);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(existsSync(lock)).toBe(false);
      expect(outcome(await stateBySubvol(image), before, complete)).toEqual(['m1', 'm2']);
    } finally {
      sleeper.kill();
    }
  });

  it('several receives start together over a stale lock: exactly one takes it and receives', async () => {
    for (let round = 0; round < 3; round++) {
      const image = fresh();
      writeFileSync(`${image}.btrfs-ts.lock`, '999999999 1\n');
      const runs = await Promise.all(Array.from({ length: 4 }, () => new Promise<{ code: number | null; err: string }>((res) => {
        const c = spawn('node', [BIN, 'receive', '-q', '-f', STREAM, image], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr.on('data', (d: Buffer) => (err += d.toString()));
        c.on('exit', (code) => res({ code, err }));
      })));
      expect(runs.filter((r) => r.code === 0).length, JSON.stringify(runs)).toBe(1);
      for (const r of runs.filter((x) => x.code !== 0)) expect(r.err).toMatch(/\[(IMAGE_LOCKED|SUBVOLUME_EXISTS)\]\n$/);
      expect(checkImage(image)).toEqual([]);
      expect(outcome(await stateBySubvol(image), before, complete)).toEqual(['m1', 'm2']);
      expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
      expect(existsSync(`${image}.btrfs-ts.lock.takeover`)).toBe(false);
    }
  });
});

describe.skipIf(!!why)('two receives into one image at the same time', () => {
  it('the second is refused with a clear error while the first holds the lock; the first completes', async () => {
    const image = fresh();
    const bytes = readFileSync(STREAM);
    // the first receive reads its stream from a pipe we hold half-written: it is mid-receive
    const first = spawn('node', [BIN, 'receive', '-q', image], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err1 = '';
    first.stderr.on('data', (d: Buffer) => (err1 += d.toString()));
    const exited = new Promise<number | null>((res) => first.on('exit', (c) => res(c)));
    first.stdin.write(bytes.subarray(0, 200));
    for (let i = 0; i < 100 && !existsSync(`${image}.btrfs-ts.lock`); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(true);
    const second = receiveCli(image, join(STREAMS, 'sample.stream'));
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^btrfs-ts: ERROR: .* is being written by process ${first.pid} \\(lock .*\\) \\[IMAGE_LOCKED\\]\\n$`));
    first.stdin.end(bytes.subarray(200));
    expect(await exited).toBe(0);
    expect(err1).toBe('');
    expect(checkImage(image)).toEqual([]);
    expect(outcome(await stateBySubvol(image), before, complete)).toEqual(['m1', 'm2']);
  });

  it('the second reaching the image through a symlink (to it, or to its directory) meets the same lock', async () => {
    // the lock sat beside the name given: both ran at once, the last commit left the other's subvolume out
    // and its data over blocks the first used
    const image = fresh();
    const linked = `${image}.link`;
    symlinkSync(image, linked);
    const viaDir = join(`${dirname(image)}-dirlink`, basename(image));
    symlinkSync(dirname(image), dirname(viaDir));
    try {
      const bytes = readFileSync(STREAM);
      const first = spawn('node', [BIN, 'receive', '-q', image], { stdio: ['pipe', 'ignore', 'pipe'] });
      const exited = new Promise<number | null>((res) => first.on('exit', (c) => res(c)));
      first.stdin.write(bytes.subarray(0, 200));
      for (let i = 0; i < 100 && !existsSync(`${image}.btrfs-ts.lock`); i++) await new Promise((r) => setTimeout(r, 50));
      for (const other of [linked, viaDir]) {
        const second = receiveCli(other, join(STREAMS, 'sample.stream'));
        expect(second.status, other).toBe(1);
        expect(second.stderr, other).toMatch(new RegExp(`is being written by process ${first.pid} .*\\[IMAGE_LOCKED\\]\\n$`));
      }
      first.stdin.end(bytes.subarray(200));
      expect(await exited).toBe(0);
      expect(checkImage(image)).toEqual([]);
      expect(outcome(await stateBySubvol(image), before, complete)).toEqual(['m1', 'm2']);
    } finally {
      rmSync(dirname(viaDir), { force: true });
      rmSync(linked, { force: true });
    }
  });
});
