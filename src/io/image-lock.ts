import { closeSync, existsSync, linkSync, openSync, readFileSync, realpathSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ReceiveError } from '../errors.js';
import { majorMinor } from './dev-number.js';

/**
 * One writer per image: a lock file beside it holding the writer's pid (and the process start time, so a
 * recycled pid is not mistaken for the writer). A lock left by a process that no longer exists (kill -9)
 * is taken over, so a crash never blocks the next receive.
 *
 * Lock and takeover marker appear with their content at once (written to a file of this process's own,
 * then hard-linked to the name, which fails if it exists): a file created empty and written after let a
 * process reading it in between take "" for a dead holder, remove a live marker and then the live lock of
 * the process that had just taken over — two receives writing one image (seen once in 40 rounds of six
 * processes over one stale lock).
 *
 * Only one process may remove a given stale lock: it must first create the `.takeover` marker, and it
 * removes the lock only if it still holds the stale content (pid and start time never come back). A taker
 * killed in the middle leaves its marker: the next one goes one marker deeper (named after the dead taker)
 * instead of removing a marker that another process may have re-created meanwhile, and the winner removes
 * the whole chain once the stale lock is gone.
 */
export function lockImage(image: string): () => void {
  const lock = `${image}.btrfs-ts.lock`;
  const me = identity();
  for (let attempt = 0; attempt < 4; attempt++) {
    if (createLock(image, lock, me)) {
      return () => unlinkQuiet(lock);
    }
    const holder = readSettled(lock);
    if (holder === undefined) continue; // released meanwhile
    if (isAlive(holder)) {
      throw new ReceiveError('IMAGE_LOCKED', `${image} is being written by process ${holder.split(' ')[0]} (lock ${lock})`);
    }
    takeOver(lock, holder, image);
  }
  throw new ReceiveError('IMAGE_LOCKED', `cannot take the lock ${lock}`);
}

/**
 * createWith for the lock itself, its failure said of the image: a receive into a directory that does not
 * exist or cannot be written named only the lock's private file (`X.img.btrfs-ts.lock.PID-0: no such file
 * or directory`), the first file it creates.
 */
function createLock(image: string, lock: string, content: string): boolean {
  try {
    return createWith(lock, content);
  } catch (e) {
    const dir = dirname(image);
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dir)) throw new ReceiveError('IMAGE_DIR', `${image}: no such directory ${dir}`, { cause: e });
    // node's "EACCES: permission denied, open '<the private file>'" without the file
    throw new ReceiveError('IMAGE_LOCK', `${image}: cannot create its lock file ${lock}: ${String((e as Error).message).split(',')[0]}`, { cause: e });
  }
}

/** Removes the stale lock whose content is `stale`, if this process wins the right to (see lockImage). */
function takeOver(lock: string, stale: string, image: string): void {
  const dead: string[] = [];
  let marker = `${lock}.takeover`;
  for (let depth = 0; depth < 8; depth++) {
    if (createWith(marker, identity())) {
      try {
        if (readSettled(lock) === stale) unlinkQuiet(lock);
      } finally {
        unlinkQuiet(marker);
        for (const m of dead) unlinkQuiet(m);
      }
      return;
    }
    const taker = readSettled(marker);
    if (taker === undefined) return; // that taker is done: look at the lock again
    if (isAlive(taker)) {
      throw new ReceiveError('IMAGE_LOCKED', `${image}: another process is taking over the stale lock ${lock}`);
    }
    dead.push(marker);
    marker = `${lock}.takeover-${taker.replace(/[^0-9]+/g, '-')}`;
  }
  throw new ReceiveError('IMAGE_LOCKED', `${image}: too many takers of the stale lock ${lock} died; remove ${lock}.takeover* by hand`);
}

/** This process as a lock holder: "pid starttime". */
function identity(): string {
  return `${process.pid} ${startTime(process.pid) ?? ''}`.trim();
}

let serial = 0;

/**
 * Creates `path` holding `content` atomically: false if it exists. Where the file system has no hard
 * links (the link is refused with EPERM and the like) it falls back to an exclusive create and a write;
 * readSettled then waits out the moment the file is still empty.
 */
function createWith(path: string, content: string): boolean {
  const own = `${path}.${process.pid}-${serial++}`;
  try {
    writeFileSync(own, `${content}\n`);
  } catch (e) {
    // (a full filesystem: made, then not written) nothing of ours is left beside the image
    unlinkQuiet(own);
    throw e;
  }
  try {
    linkSync(own, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS' && code !== 'EMLINK') throw e;
  } finally {
    unlinkQuiet(own);
  }
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, `${content}\n`);
  } catch (e) {
    unlinkQuiet(path);
    throw e;
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The file's content, undefined if it does not exist; an empty file is read again for up to ~0.2 s. */
function readSettled(path: string): string | undefined {
  for (let i = 0; ; i++) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8').trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    if (text !== '' || i === 20) return text;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
}

function unlinkQuiet(path: string): void {
  try { unlinkSync(path); } catch { /* already gone */ }
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

/**
 * Refuses an image the kernel has mounted right now (a file through a loop device, a block device itself):
 * two writers would corrupt it.
 */
export function refuseIfMounted(image: string): void {
  const how = mountedAs(image);
  if (how) throw new ReceiveError('IMAGE_MOUNTED', `${image} is mounted ${how}: unmount it first`);
}

/**
 * How the kernel has `image` mounted right now — "through /dev/loop0" for a file behind a loop device,
 * "(as /dev/sdb1)" for a block device — or undefined when it has not.
 */
export function mountedAs(image: string): string | undefined {
  const st = statSync(image, { throwIfNoEntry: false, bigint: true });
  if (!st) return undefined;
  if (st.isBlockDevice()) {
    const source = mountSourceOf((rdev) => rdev === st.rdev);
    return source ? `(as ${source})` : undefined;
  }
  // the mounted block devices are few and /proc has them at once; /sys/block's every loop device is not
  let real: string | undefined;
  const source = mountSourceOf((rdev) => {
    let backing: string;
    try {
      backing = readFileSync(`/sys/dev/block/${majorMinor(rdev)}/loop/backing_file`, 'utf8').trim();
    } catch {
      return false; // not a loop device
    }
    try {
      real ??= realpathSync(image);
    } catch {
      return false;
    }
    return backing === real;
  });
  return source ? `through ${source}` : undefined;
}

/**
 * The source of the first mount of a block device that `matches` (by its device number), under whatever
 * name it was mounted by (after " - FSTYPE " in mountinfo); undefined when none. By device number, not by
 * the third field: btrfs mounts report an anonymous MAJOR:MINOR of their own there, not the device's.
 */
function mountSourceOf(matches: (rdev: bigint) => boolean): string | undefined {
  let mounts: string;
  try { mounts = readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return undefined; }
  for (const line of mounts.split('\n')) {
    const source = line.split(' - ')[1]?.split(' ')[1];
    if (!source?.startsWith('/dev/')) continue;
    let rdev: bigint;
    try {
      const st = statSync(source, { bigint: true });
      if (!st.isBlockDevice()) continue;
      rdev = st.rdev;
    } catch {
      continue; // a source that is gone (or not a path): not this device
    }
    if (matches(rdev)) return source;
  }
  return undefined;
}
