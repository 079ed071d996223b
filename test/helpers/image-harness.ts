import { execFile, execFileSync, spawnSync } from 'node:child_process';
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
/** Peak resident memory of the process running all commands of one image: far above what any reader needs. */
const MAX_RSS_KIB = 1536 << 10;

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

/**
 * sha256 of the file's data segments (offset, length, bytes) found with SEEK_DATA/SEEK_HOLE, which Node
 * cannot do: btrfs-image restores are terabytes of holes that a plain read would take minutes over.
 */
const SPARSE_SHA = `import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); end = os.fstat(fd).st_size; h = hashlib.sha256(str(end).encode()); at = 0
while at < end:
    try: at = os.lseek(fd, at, os.SEEK_DATA)
    except OSError: break
    stop = os.lseek(fd, at, os.SEEK_HOLE); h.update(b'@%d' % at)
    while at < stop:
        b = os.pread(fd, min(1 << 20, stop - at), at); h.update(b); at += len(b)
print(h.hexdigest())`;

function sha(path: string): string {
  if (statSync(path).size > RECEIVE_PLAIN_HASH_MAX) return execFileSync('python3', ['-c', SPARSE_SHA, path], { encoding: 'utf8' }).trim();
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

/** Beyond this apparent size (btrfs-image restores are terabyte-sized sparse files) the image is hashed by its data segments. */
const RECEIVE_PLAIN_HASH_MAX = 1 << 30;
/** Output allowed per command: 1 MiB, or more for images whose content is larger (many snapshots of a tree list it many times). */
function outputLimit(image: string): number {
  return Math.max(1 << 20, 4 * statSync(image).blocks * 512);
}
const HAVE_PYTHON = spawnSync('python3', ['--version'], { stdio: 'ignore' }).error === undefined;
const HAVE_CHECK = spawnSync('btrfs', ['--version'], { stdio: 'ignore' }).error === undefined;

function checks(image: string): boolean {
  return spawnSync('btrfs', ['check', '--readonly', image], { stdio: 'ignore', timeout: TIMEOUT_MS }).status === 0;
}

/** Judges how one command ended from its status and stderr. */
function judge(label: string, status: number | null, stdout: string, stderr: string, extra: string[] = []): CommandResult {
  const problems = [...extra];
  if (/^\s+at /m.test(stderr)) problems.push('stack trace on stderr');
  // (compsize's own two lines for nothing to report are its error lines, as compsize prints them)
  const errors = stderr.split('\n').filter((l) => (l.startsWith('btrfs-ts: ') && !l.startsWith('btrfs-ts: WARNING')) || /^(No files\.|All empty or still-delalloced files\.)$/.test(l));
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

/**
 * CLI commands (label, arguments) run one after another in one process (harness-run.mjs), each judged;
 * `limit`: the output a command may write. A runner that stops early (a hang, a crash) is judged on the
 * command it stopped in.
 */
export async function runCommands(commands: [string, string[]][], limit = 1 << 20): Promise<CommandResult[]> {
  const r = await spawnNode([RUNNER, JSON.stringify(commands.map((c) => c[1]))]);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{'));
  const out = lines.map((l, i) => {
    const x = JSON.parse(l) as { status: number; stdout: string; stderr: string; outBytes: number; maxRSS: number };
    const extra = x.outBytes > limit ? [`${x.outBytes} bytes of output (limit ${limit})`] : [];
    if (x.maxRSS > MAX_RSS_KIB) extra.push(`peak memory ${x.maxRSS >> 10} MiB`);
    return judge(commands[i]![0], x.status, x.stdout, x.stderr, extra);
  });
  if (out.length < commands.length) {
    out.push(judge(commands[out.length]![0], r.status, '', r.stderr, [r.failure ?? 'the runner stopped early']));
  }
  return out;
}

/** Every command on `image`, in one process; scratch space under `work` (removed again). */
export async function runAllCommands(image: string, work: string): Promise<CommandResult[]> {
  mkdirSync(work, { recursive: true });
  try {
    const copy = join(work, 'recv.img');
    const receive = statSync(image).size <= RECEIVE_PLAIN_HASH_MAX || HAVE_PYTHON;
    if (receive) execFileSync('cp', ['--sparse=always', image, copy]);
    const before = receive ? sha(copy) : '';
    const commands: [string, string[]][] = [
      ['ls -l', ['ls', '-l', image, '/']],
      ['cat', ['cat', image, 'd/f1']],
      ['subvolume list', ['subvolume', 'list', image]],
      ['subvolume show', ['subvolume', 'show', image, '/']],
      ['compsize', ['compsize', image]],
      ['qgroup show', ['qgroup', 'show', image]],
      ['manifest', ['manifest', image]],
      ['extract', ['extract', '--no-xattrs', image, join(work, 'x')]],
      ...(receive ? [['receive', ['receive', '-q', '-f', SAMPLE_STREAM, copy]] as [string, string[]]] : []),
    ];
    const out = await runCommands(commands, outputLimit(image));
    const recv = out.find((x) => x.command === 'receive');
    if (recv && recv.outcome !== 'ok' && sha(copy) !== before) recv.problems.push('a failed receive changed the image');
    // a receive that works must leave an image btrfs check accepts, when it accepted the image before
    if (recv?.outcome === 'ok' && HAVE_CHECK && !checks(copy) && checks(image)) recv.problems.push('the receive left an image btrfs check rejects');
    // the subvolume just received deleted again: a write to the image's own trees (the entry in the top
    // directory, the extent tree) that must fail whole, or leave an image check accepts as before
    if (recv?.outcome === 'ok') {
      const mid = sha(copy);
      const del = await runCli(['subvolume', 'delete', '-q', copy, 'sample'], 'subvolume delete');
      if (del.outcome !== 'ok' && sha(copy) !== mid) del.problems.push('a failed delete changed the image');
      if (del.outcome === 'ok' && HAVE_CHECK && !checks(copy) && checks(image)) del.problems.push('the delete left an image btrfs check rejects');
      out.push(del);
    }
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
