import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';

/**
 * Node has no API for four things a receive needs: nanosecond times on a path without following a
 * symlink (`fs.lutimes` rounds to microseconds), mknod (fifos, sockets, devices), and xattrs. btrfs-progs
 * calls utimensat/mknod/lsetxattr; we ask a small long-lived python3 process to make those exact calls,
 * one request line per operation, so a stream with thousands of inodes costs no process spawns. Paths
 * and names travel as hex, so non-UTF-8 names survive.
 *
 * Without python3 every call reports `unavailable` and the caller falls back (or warns).
 */

const SCRIPT = String.raw`
import os, sys
def h(x):
    return b'' if x == b'-' else bytes.fromhex(x.decode())
w = sys.stdout.write
for line in sys.stdin.buffer:
    a = line.split()
    try:
        op, p = a[0], h(a[1])
        if op == b'utime':
            os.utime(p, ns=(int(a[2]), int(a[3])), follow_symlinks=False)
        elif op == b'mknod':
            os.mknod(p, int(a[2]), int(a[3]))
        elif op == b'setx':
            os.setxattr(p, h(a[2]), h(a[3]), 0, follow_symlinks=False)
        elif op == b'rmx':
            os.removexattr(p, h(a[2]), follow_symlinks=False)
        else:
            raise ValueError('unknown op')
        w('0\n')
    except OSError as e:
        w('%d %s\n' % (e.errno or 5, e.strerror))
    except Exception as e:
        w('-1 %s\n' % e)
    sys.stdout.flush()
`;

const OPS: Record<string, string> = { utime: 'utimensat', mknod: 'mknod', setx: 'lsetxattr', rmx: 'lremovexattr' };

export class HelperError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

const hex = (b: Uint8Array): string => (b.length === 0 ? '-' : Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex'));

function findPython(): string | null {
  for (const p of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(p, ['-c', 'import os; os.utime'], { stdio: 'ignore' });
    if (r.error === undefined && r.status === 0) return p;
  }
  return null;
}

export class SyscallHelper {
  private proc: ChildProcessWithoutNullStreams | null = null;
  private waiting: { op: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  private buf = '';
  private dead: Error | null = null;
  readonly available: boolean;

  constructor() {
    const py = findPython();
    this.available = py !== null;
    if (py === null) return;
    const proc = spawn(py, ['-u', '-c', SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdout.setEncoding('latin1');
    proc.stdout.on('data', (d: string) => this.onData(d));
    const fail = (e: Error) => {
      this.dead = e;
      for (const w of this.waiting.splice(0)) w.reject(e);
    };
    proc.on('error', fail);
    proc.on('exit', (code) => fail(new Error(`syscall helper exited (${code})`)));
    proc.stdin.on('error', fail);
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const w = this.waiting.shift();
      if (!w) continue;
      if (line === '0') w.resolve();
      else {
        const sp = line.indexOf(' ');
        w.reject(new HelperError(Number(line.slice(0, sp)), `${w.op}: ${line.slice(sp + 1)}`));
      }
    }
  }

  private call(line: string): Promise<void> {
    if (!this.proc) return Promise.reject(new HelperError(-1, 'python3 is not available'));
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.waiting.push({ op: OPS[line.slice(0, line.indexOf(' '))] ?? 'helper', resolve, reject });
      this.proc!.stdin.write(line + '\n');
    });
  }

  /** utimensat(path, {atime, mtime}, AT_SYMLINK_NOFOLLOW) with times in nanoseconds since the epoch. */
  utime(path: Uint8Array, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
    return this.call(`utime ${hex(path)} ${atimeNs} ${mtimeNs}`);
  }

  /** mknod(path, mode, dev): `mode` includes the file type bits. */
  mknod(path: Uint8Array, mode: number, dev: bigint): Promise<void> {
    return this.call(`mknod ${hex(path)} ${mode} ${dev}`);
  }

  setXattr(path: Uint8Array, name: Uint8Array, value: Uint8Array): Promise<void> {
    return this.call(`setx ${hex(path)} ${hex(name)} ${hex(value)}`);
  }

  removeXattr(path: Uint8Array, name: Uint8Array): Promise<void> {
    return this.call(`rmx ${hex(path)} ${hex(name)}`);
  }

  async close(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    this.proc = null;
    if (p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.stdin.end();
    });
  }
}
