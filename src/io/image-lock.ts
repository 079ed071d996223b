import { closeSync, existsSync, openSync, readdirSync, readFileSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { ReceiveError } from '../errors.js';

/**
 * One writer per image: a lock file beside it holding the writer's pid. A lock left by a process that
 * no longer exists (kill -9) is taken over, so a crash never blocks the next receive.
 */
export function lockImage(image: string): () => void {
  const lock = `${image}.btrfs-ts.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try { unlinkSync(lock); } catch { /* already gone */ }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(readFileSync(lock, 'utf8').trim());
      if (pid > 0 && pidAlive(pid)) {
        throw new ReceiveError('image-locked', `${image} is being written by process ${pid} (lock ${lock})`);
      }
      unlinkSync(lock);
    }
  }
  throw new ReceiveError('image-locked', `cannot take the lock ${lock}`);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Refuses an image the kernel has mounted right now (through a loop device): two writers would corrupt it. */
export function refuseIfMounted(image: string): void {
  if (!existsSync('/sys/block')) return;
  let real: string;
  try { real = realpathSync(image); } catch { return; }
  for (const dev of readdirSync('/sys/block')) {
    if (!dev.startsWith('loop')) continue;
    let backing: string;
    try { backing = readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8').trim(); } catch { continue; }
    if (backing !== real) continue;
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    if (mounts.split('\n').some((l) => l.includes(` /dev/${dev} `))) {
      throw new ReceiveError('image-mounted', `${image} is mounted through /dev/${dev}: unmount it first`);
    }
  }
}
