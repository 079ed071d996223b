import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Runs every reading command and a small receive on one image through the real CLI and judges only
 * robustness: each command ends (a generous timeout detects hangs, it is not a speed check) with exit 0
 * or exit 1 and a one-line error, never a stack trace or an internal-error exit, with bounded output; a
 * failed receive leaves the image byte for byte as it was. Content correctness is checked elsewhere
 * (against the kernel where it mounts the image).
 */

export const CLI = join(__dirname, '..', '..', 'bin', 'btrfs-ts.js');
const RUNNER = join(__dirname, 'harness-run.mjs');
const SAMPLE_STREAM = join(__dirname, '..', '..', 'streams', 'sample.stream');
/** Generous: a hang detector for all commands on one image, not a speed assertion. */
const TIMEOUT_MS = 120_000;
const MAX_OUTPUT = 64 << 20;

export type Outcome = 'ok' | 'error' | 'refused';

export interface CommandResult {
  command: string;
  outcome: Outcome;
  /** The error line, when there was one. */
  line?: string;
  /** What is wrong with how the command ended: empty when it ended as it should. */
  problems: string[];
  stdout: string;
}

function sha(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let at = 0, n; (n = readSync(fd, buf, 0, buf.length, at)) > 0; at += n) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** Images beyond this apparent size (btrfs-image restores terabyte-sized sparse files) are not copied for the receive. */
const RECEIVE_COPY_MAX = 1n << 30n;

/** Judges how one command ended from its status and stderr. */
function judge(label: string, status: number | null, stdout: string, stderr: string, extra: string[] = []): CommandResult {
  const problems = [...extra];
  if (/^\s+at /m.test(stderr)) problems.push('stack trace on stderr');
  const errors = stderr.split('\n').filter((l) => l.startsWith('btrfs-ts: ') && !l.startsWith('btrfs-ts: WARNING'));
  if (status !== 0 && status !== 1) problems.push(`exit status ${status}`);
  if (status === 1 && errors.length !== 1) problems.push(`exit 1 with ${errors.length} error lines`);
  const line = errors[0];
  const outcome: Outcome = status === 0 ? 'ok' : /cannot modify this image|refus|not supported|unsupported/i.test(line ?? '') ? 'refused' : 'error';
  if (problems.length) problems.push(`stderr: ${stderr.slice(0, 2000)}`);
  return { command: label, outcome, ...(line ? { line } : {}), problems, stdout };
}

function spawnNode(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string; failure?: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: TIMEOUT_MS, maxBuffer: MAX_OUTPUT, encoding: 'latin1', killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; killed?: boolean }) | null;
      const failure = e?.killed ? `killed after ${TIMEOUT_MS} ms (hang?)` : e && typeof e.code !== 'number' ? e.message : undefined;
      resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr, ...(failure ? { failure } : {}) });
    });
  });
}

/** One CLI run through bin/btrfs-ts.js, judged. */
export async function runCli(args: string[], label: string): Promise<CommandResult> {
  const r = await spawnNode([CLI, ...args]);
  return judge(label, r.status, r.stdout, r.stderr, r.failure ? [r.failure] : []);
}

/** Every command on `image`, in one process; scratch space under `work` (removed again). */
export async function runAllCommands(image: string, work: string): Promise<CommandResult[]> {
  mkdirSync(work, { recursive: true });
  try {
    const copy = join(work, 'recv.img');
    const receive = BigInt(statSync(image).size) <= RECEIVE_COPY_MAX;
    if (receive) execFileSync('cp', ['--sparse=always', image, copy]);
    const before = receive ? sha(copy) : '';
    const commands: [string, string[]][] = [
      ['ls -l', ['ls', '-l', image, '/']],
      ['cat', ['cat', image, 'd/f1']],
      ['subvolume list', ['subvolume', 'list', image]],
      ['manifest', ['manifest', image]],
      ['extract', ['extract', '--no-xattrs', image, join(work, 'x')]],
      ...(receive ? [['receive', ['receive', '-q', '-f', SAMPLE_STREAM, copy]] as [string, string[]]] : []),
    ];
    const r = await spawnNode([RUNNER, JSON.stringify(commands.map((c) => c[1]))]);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('{'));
    const out = lines.map((l, i) => {
      const x = JSON.parse(l) as { status: number; stdout: string; stderr: string; outBytes: number };
      return judge(commands[i]![0], x.status, x.stdout, x.stderr, x.outBytes > 1 << 20 ? [`${x.outBytes} bytes of output`] : []);
    });
    if (out.length < commands.length) {
      out.push(judge(commands[out.length]![0], r.status, '', r.stderr, [r.failure ?? 'the runner stopped early']));
    }
    const recv = out.find((x) => x.command === 'receive');
    if (recv && recv.outcome !== 'ok' && sha(copy) !== before) recv.problems.push('a failed receive changed the image');
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
