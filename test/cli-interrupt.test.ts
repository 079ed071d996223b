import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Ctrl-C (or SIGTERM) while a command writes a stream or a new image: status 130, one line saying so, and
 * the partial output removed — a stream cut short, or an image half made, looks usable, and the same
 * commands remove it on any other failure. The signal is sent once the output exists and has grown, so the
 * command is in the middle of its work (the source is large enough that it is, on any machine).
 */
const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const built = existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'));
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-interrupt-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const at = (...p: string[]) => join(work, ...p);

/**
 * Runs the CLI, sends `signal` once `output` holds at least `minBytes` (allocated on disk with `allocated`:
 * a new image has its full size at once), and answers the exit status and stderr.
 */
async function interrupted(args: string[], output: string, minBytes: number, signal: NodeJS.Signals, allocated = false): Promise<{ status: number | null; stderr: string; sawOutput: boolean }> {
  const child = spawn('node', [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let sawOutput = false;
  let running = true;
  void exited.then(() => (running = false));
  while (running) {
    const st = existsSync(output) ? statSync(output) : undefined;
    if (st && (allocated ? st.blocks * 512 : st.size) >= minBytes) {
      sawOutput = true;
      child.kill(signal);
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return { status: await exited, stderr, sawOutput };
}

/** What every interrupted writer must show: stopped in the middle, status 130, the one line, `out` gone. */
function expectRemoved(r: { status: number | null; stderr: string; sawOutput: boolean }, signal: NodeJS.Signals, what: 'stream' | 'image', out: string): void {
  expect(r.sawOutput).toBe(true);
  expect(r.status).toBe(130);
  expect(r.stderr).toBe(`btrfs-ts: ERROR: stopped by ${signal}; the partial ${what} ${out} is removed [INTERRUPTED]\n`);
  expect(existsSync(out)).toBe(false);
}

describe.skipIf(!built)('an interrupted command removes the stream or new image it was writing', () => {
  const image = at('src.img');
  beforeAll(() => {
    // 2,000 files of 128 KiB (256 MiB of data) in a read-only subvolume `snap`: seconds of mkfs, a send of 256 MiB
    for (let d = 0; d < 20; d++) {
      mkdirSync(at('tree', 'snap', `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) writeFileSync(at('tree', 'snap', `d${d}`, `f${f}`), Buffer.alloc(128 * 1024, (d * 100 + f) & 255));
    }
    const r = spawnSync('node', [BIN, 'mkfs', '-q', '--subvol', 'ro:snap', '-r', at('tree'), image], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  }, 120_000);

  it.each(['SIGINT', 'SIGTERM'] as const)('send -f OUT, %s: status 130, OUT removed', async (signal) => {
    const out = at(`send-${signal}.stream`);
    const r = await interrupted(['send', '-q', '-f', out, image, 'snap'], out, 4 << 20, signal);
    expectRemoved(r, signal, 'stream', out);
  }, 60_000);

  it('convert -o OUT, SIGINT: status 130, OUT removed', async () => {
    const stream = at('whole.stream');
    const s = spawnSync('node', [BIN, 'send', '-q', '-f', stream, image, 'snap'], { encoding: 'utf8' });
    expect(s.status, s.stderr).toBe(0);
    const out = at('converted.stream');
    const r = await interrupted(['convert', '-f', stream, '--compress', 'zstd', '-o', out], out, 1, 'SIGINT');
    expectRemoved(r, 'SIGINT', 'stream', out);
  }, 60_000);

  it('mkfs -r of a new image, SIGINT in the middle of the walk: status 130, the image removed', async () => {
    const out = at('new.img');
    // the image is made at its full size before the walk: the signal goes once 32 MiB of file data are in
    // it, with the walk under way (a walk that never turned the event loop ran to its end, status 0)
    const r = await interrupted(['mkfs', '-q', '-r', at('tree'), out], out, 32 << 20, 'SIGINT', true);
    expectRemoved(r, 'SIGINT', 'image', out);
  }, 60_000);

  it('send to a pipe, SIGINT: status 130, the plain line (nothing to remove)', async () => {
    const child = spawn('node', [BIN, 'send', '-q', image, 'snap'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // the first bytes on the pipe say the send is under way; then nobody reads: it waits, and is stopped
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.stdout.pause();
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toBe('btrfs-ts: ERROR: stopped by SIGINT [INTERRUPTED]\n');
  }, 60_000);
});
