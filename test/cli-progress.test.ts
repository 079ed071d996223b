import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clock, Progress } from '../src/cli/progress.js';
import { hasTool, skipReason } from './helpers/oracle.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * Progress: one line on stderr, redrawn in place, only on a terminal (or with --progress), never with
 * --no-progress; every long command has it. A pseudo-terminal comes from script(1).
 */
const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const STREAM = join(STREAMS_DIR, 'full-v1.stream');
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-progress-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function sink() {
  const writes: string[] = [];
  return { writes, out: { isTTY: true, write: (s: string) => writes.push(s) } };
}

describe('Progress line', () => {
  it('shows %, done and total, rate and ETA; only redraws every 200 ms', () => {
    let t = 0;
    const s = sink();
    const p = new Progress({ label: 'receive', out: s.out, now: () => t });
    p.setTotal(100 << 20);
    t = 2000;
    p.advance(25 << 20);
    expect(s.writes).toEqual([`\rreceive  25% 25.0 MiB of 100.0 MiB, 12.5 MiB/s, ETA 0:06\x1b[K`]);
    t = 2100;
    p.advance(1 << 20);
    expect(s.writes).toHaveLength(1);
    t = 2300;
    p.detail = '12 commands';
    p.advance(0);
    expect(s.writes[1]).toMatch(/^\rreceive  26% 26\.0 MiB of 100\.0 MiB, .*ETA 0:0\d, 12 commands\x1b\[K$/);
    p.clear();
    expect(s.writes[2]).toBe('\r\x1b[K');
  });

  it('finish draws the final figures even inside the redraw interval', () => {
    let t = 0;
    const s = sink();
    const p = new Progress({ label: 'dump', out: s.out, now: () => t });
    p.setTotal(1000);
    p.advance(200);
    t = 50;
    p.advance(800);
    expect(s.writes).toHaveLength(1);
    p.finish();
    expect(s.writes[1]).toMatch(/^\rdump 100% 1000 B of 1000 B, /);
  });

  it('without a total: what is done and the rate, no % or ETA; counts in their unit', () => {
    let t = 0;
    const p = new Progress({ label: 'extract', out: sink().out, now: () => t });
    t = 1000;
    p.done = 3 << 20;
    expect(p.line(t)).toBe('extract 3.00 MiB, 3.00 MiB/s');
    const q = new Progress({ label: 'x', unit: 'files', out: sink().out, now: () => 0 });
    q.setTotal(10);
    q.done = 5;
    expect(q.line(1000)).toBe('x  50% 5 files of 10 files, 5/s, ETA 0:01');
  });

  it('is off when stderr is not a terminal or with -q, on with --progress, off with --no-progress', () => {
    const pipe = { write: () => true };
    expect(new Progress({ label: 'a', out: pipe }).enabled).toBe(false);
    expect(new Progress({ label: 'a', out: pipe, flag: true }).enabled).toBe(true);
    expect(new Progress({ label: 'a', out: sink().out }).enabled).toBe(true);
    expect(new Progress({ label: 'a', out: sink().out, quiet: true }).enabled).toBe(false);
    expect(new Progress({ label: 'a', out: sink().out, flag: false }).enabled).toBe(false);
    const s = sink();
    const off = new Progress({ label: 'a', out: s.out, flag: false });
    off.advance(5);
    off.clear();
    expect(s.writes).toEqual([]);
  });

  it('clock: m:ss and h:mm:ss', () => {
    expect(clock(5.2)).toBe('0:06');
    expect(clock(61)).toBe('1:01');
    expect(clock(3 * 3600 + 62)).toBe('3:01:02');
  });
});

const noScript = hasTool('script', ['--version']) ? undefined : 'script(1) (util-linux) not installed: no pseudo-terminal';
if (noScript) skipReason('cli-progress pty tests', noScript);

/** Runs the CLI in a pseudo-terminal (stdin, stdout, stderr all the terminal unless `shell` redirects). */
function inPty(shell: string): { status: number | null; out: string } {
  const r = spawnSync('script', ['-qec', shell, '/dev/null'], { cwd: work, encoding: 'latin1', timeout: 120_000 });
  return { status: r.status, out: r.stdout };
}
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const cli = (args: string) => `${q(process.execPath)} ${q(BIN)} ${args}`;

describe.skipIf(noScript !== undefined)('every long command shows progress on a terminal', () => {
  const streamSize = statSync(STREAM).size;
  const img = join(work, 'p.img');
  const tree = join(work, 'tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'f'), Buffer.alloc(3 << 20, 7));
  // commands whose output goes to stdout draw only when stdout is elsewhere (here: a file)
  const cases: [string, string, RegExp][] = [
    ['receive', `receive -f ${q(STREAM)} ${q(img)}`, new RegExp(`\\rreceive +\\d+% .* of ${(streamSize / 1024).toFixed(1)} KiB`)],
    ['dump', `dump -f ${q(STREAM)} > dump.out`, /\rdump +\d+% /],
    ['verify', `verify -f ${q(STREAM)} > verify.out`, /\rverify +\d+% /],
    ['plan', `plan -f ${q(STREAM)} > plan.out`, /\rplan +\d+% /],
    ['convert', `convert --proto 2 -f ${q(STREAM)} -o conv.stream`, /\rconvert +\d+% /],
    ['extract-stream', `extract-stream -f ${q(STREAM)} xs`, /\rextract-stream +\d+% /],
    ['extract', `extract ${q(img)}:full xi`, /\rextract [\d.]+ (B|KiB|MiB), .*entries/],
    ['mkfs --rootdir', `mkfs -r ${q(tree)} m.img`, /\rmkfs +\d+% .* of 3\.00 MiB/],
  ];
  for (const [name, args, line] of cases) {
    it(name, () => {
      const r = inPty(cli(args));
      expect(r.out).not.toMatch(/ERROR|at .*\.js:\d+/);
      expect(r.status).toBe(0);
      expect(r.out).toMatch(line);
      // the line is cleared before the command's own last words
      expect(r.out).toMatch(/\r\x1b\[K/);
    });
  }

  it('--no-progress on a terminal: no progress line', () => {
    rmSync(join(work, 'q.img'), { force: true });
    const r = inPty(cli(`receive --no-progress -f ${q(STREAM)} q.img`));
    expect(r.status).toBe(0);
    expect(r.out).toContain('At subvol full');
    // the terminal turns \n into \r\n: look for the redraw and clear sequences instead
    expect(r.out).not.toMatch(/\rreceive|\x1b\[K/);
  });

  it('dump with stdout on the terminal draws nothing unless asked', () => {
    const plain = inPty(cli(`dump -f ${q(STREAM)}`));
    expect(plain.out).toMatch(/subvol +\.\/full/);
    expect(plain.out).not.toMatch(/\rdump |\x1b\[K/);
  });
});

describe('not a terminal', () => {
  it('no carriage return by default; --progress draws anyway', () => {
    rmSync(join(work, 'n.img'), { force: true });
    const plain = spawnSync(process.execPath, [BIN, 'receive', '-f', STREAM, join(work, 'n.img')], { encoding: 'latin1' });
    expect(plain.status).toBe(0);
    expect(plain.stderr).toBe('At subvol full\n');
    rmSync(join(work, 'n.img'), { force: true });
    const asked = spawnSync(process.execPath, [BIN, 'receive', '--progress', '-f', STREAM, join(work, 'n.img')], { encoding: 'latin1' });
    expect(asked.status).toBe(0);
    expect(asked.stderr).toMatch(/\rreceive +100% /);
    expect(asked.stderr).toContain('At subvol full\n');
    expect(asked.stderr.endsWith('\r\x1b[K')).toBe(true);
  });
});
