import { closeSync, existsSync, openSync, readdirSync, readFileSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { ReceiveError } from '../errors.js';

/**
 * One writer per image: a lock file beside it holding the writer's pid (and the process start time, so a
 * recycled pid is not mistaken for the writer). A lock left by a process that no longer exists (kill -9)
 * is taken over, so a crash never blocks the next receive. Only one process may take over a stale lock
 * (a `.takeover` marker created exclusively): two receives starting together after a crash cannot both
 * remove it and both believe they hold the image.
 */
export function lockImage(image: string): () => void {
  const lock = `${image}.btrfs-ts.lock`;
  const me = `${process.pid} ${startTime(process.pid) ?? ''}`.trim();
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, `${me}\n`);
      closeSync(fd);
      return () => {
        try { unlinkSync(lock); } catch { /* already gone */ }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = readHolder(lock);
    if (holder === undefined) continue; // released meanwhile
    if (isAlive(holder)) {
      throw new ReceiveError('IMAGE_LOCKED', `${image} is being written by process ${holder.split(' ')[0]} (lock ${lock})`);
    }
    takeOver(lock, holder, image);
  }
  throw new ReceiveError('IMAGE_LOCKED', `cannot take the lock ${lock}`);
}

/** Removes a stale lock whose content is `stale`, if this process wins the right to (see lockImage). */
function takeOver(lock: string, stale: string, image: string): void {
  const marker = `${lock}.takeover`;
  let fd: number;
  try {
    fd = openSync(marker, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const taker = readHolder(marker);
    // a taker killed in the middle leaves its marker: it is stale as soon as that process is gone
    if (taker !== undefined && !isAlive(taker)) {
      try { unlinkSync(marker); } catch { /* another process removed it */ }
      return;
    }
    throw new ReceiveError('IMAGE_LOCKED', `${image}: another process is taking over the stale lock ${lock}`);
  }
  try {
    writeSync(fd, `${process.pid} ${startTime(process.pid) ?? ''}`.trim() + '\n');
    closeSync(fd);
    // still the same stale content? (another taker may have replaced it with a live lock already)
    if (readHolder(lock) === stale) unlinkSync(lock);
  } finally {
    try { unlinkSync(marker); } catch { /* gone */ }
  }
}

function readHolder(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** "pid [starttime]": alive when the pid exists and, if recorded, started at the same time. */
function isAlive(holder: string): boolean {
  const [pidText, started] = holder.split(' ');
  const pid = Number(pidText);
  if (!(pid > 0) || !pidAlive(pid)) return false;
  return started === undefined || startTime(pid) === undefined || startTime(pid) === started;
}

/** Start time of a process in clock ticks since boot (/proc/PID/stat field 22), when /proc has it. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
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
      throw new ReceiveError('IMAGE_MOUNTED', `${image} is mounted through /dev/${dev}: unmount it first`);
    }
  }
}
