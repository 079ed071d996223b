import * as fs from 'node:fs';
import { ImageError } from '../errors.js';
import { nodeChildProcess } from '../util/lazy-builtins.js';

/**
 * The rollback journal's layout (undo-log.ts writes it), and putting an image back from it.
 * Layout: header [magic 8][generation u64][size u64]; records [offset u64][length u32][zero u8][bytes].
 */
export const MAGIC = Buffer.from('btrfsTSu');
export const HEADER = 24;
export const REC = 13;
/** Superblock generation: bytes 0x48.. of the primary copy at 64 KiB. */
const SB_GENERATION = 0x10000 + 0x48;

export const undoPath = (image: string): string => `${image}.btrfs-ts.undo`;

/**
 * Removes the journal at `path` if it is there. unlink, not rmSync: rmSync loads node's rimraf, compiled
 * from source at every receive (its V8 flags refuse node's code cache of it).
 */
export function removeJournal(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * A journal left by a process that did not finish (killed): rolled back if no commit happened since it
 * was written, dropped otherwise — and dropped when the image is gone: a receive into a new image killed,
 * its half-made image removed by hand, left a journal that nothing can be put back into, and every later
 * receive to that path failed on opening the missing image. Call with the image's lock held, before
 * opening it for writing.
 */
export function recoverUndo(image: string): 'none' | 'rolled-back' | 'dropped' {
  const path = undoPath(image);
  if (!fs.existsSync(path)) return 'none';
  if (!fs.existsSync(image)) return dropped(path);
  const fd = fs.openSync(path, 'r');
  const imageFd = fs.openSync(image, 'r+');
  try {
    const h = Buffer.alloc(HEADER);
    const ok = fs.readSync(fd, h, 0, HEADER, 0) === HEADER && h.subarray(0, 8).equals(MAGIC);
    if (!ok || h.readBigUInt64LE(8) !== generationOf(imageFd)) return dropped(path);
    restore(imageFd, fd, image);
  } finally {
    fs.closeSync(imageFd);
    fs.closeSync(fd);
  }
  removeJournal(path);
  return 'rolled-back';
}

function dropped(path: string): 'dropped' {
  removeJournal(path);
  return 'dropped';
}

/**
 * Writes every record of the journal on `fd` back into the image and cuts it to the journal's size. Ranges
 * that were zeros are punched out again (fallocate(1)) rather than written: on a full filesystem writing
 * zeros into what was a hole needs room that is not there, and the image stays as sparse as it was.
 */
export function restore(imageFd: number, fd: number, image: string): void {
  const size = fs.fstatSync(fd).size;
  const h = Buffer.alloc(HEADER);
  fs.readSync(fd, h, 0, HEADER, 0);
  let pos = HEADER;
  const head = Buffer.alloc(REC);
  const zeros: [number, number][] = [];
  try {
    while (pos + REC <= size) {
      fs.readSync(fd, head, 0, REC, pos);
      const offset = Number(head.readBigUInt64LE(0));
      const len = head.readUInt32LE(8);
      pos += REC;
      if (head[12] === 1) {
        const last = zeros.at(-1);
        if (last && last[0] + last[1] === offset) last[1] += len;
        else zeros.push([offset, len]);
        continue;
      }
      // a record cut short by a kill was never followed by its image write: nothing to put back
      if (pos + len > size) break;
      const bytes = Buffer.alloc(len);
      fs.readSync(fd, bytes, 0, len, pos);
      writeAll(imageFd, bytes, offset);
      pos += len;
    }
    const cut = Number(h.readBigUInt64LE(16));
    // a block device has a fixed size: only a file is cut back
    if (fs.fstatSync(imageFd).isFile()) fs.ftruncateSync(imageFd, cut);
    for (const [offset, len] of zeros) {
      const n = Math.min(len, cut - offset);
      if (n > 0 && !punchHole(image, offset, n)) {
        for (let at = 0; at < n; at += ZEROS.length) writeAll(imageFd, ZEROS.subarray(0, Math.min(ZEROS.length, n - at)), offset + at);
      }
    }
    // fdatasync covers the size cut too (metadata needed to read the data back)
    fs.fdatasyncSync(imageFd);
  } catch (e) {
    throw new ImageError('IMAGE_ROLLBACK', `cannot put ${image} back as it was from ${undoPath(image)}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * pwritev (two iovecs: libuv turns a single one into pwrite), not pwrite: the receive's own image writes
 * stay the only pwrite64 calls, which the fault tests count to place a failure at the n-th one — strace
 * counts per thread, and a rollback runs on the thread that also writes the large extents, so a single
 * injected fault would otherwise hit the receive and its rollback both.
 */
function writeAll(fd: number, b: Uint8Array, offset: number): void {
  for (let done = 0; done < b.length;) done += fs.writevSync(fd, [b.subarray(done), EMPTY], offset + done);
}
const EMPTY = new Uint8Array(0);

/** fallocate --punch-hole (node:fs has no fallocate); false when the tool or the filesystem cannot. */
function punchHole(image: string, offset: number, len: number): boolean {
  return nodeChildProcess().spawnSync('fallocate', ['-p', '-o', String(offset), '-l', String(len), image], { stdio: 'ignore' }).status === 0;
}

/**
 * How far back the journal must reach: a file's size (what lies past it is cut off on rollback), or all of
 * a block device (whose fstat size is 0 and which cannot be cut).
 */
export function extentOf(imageFd: number): number {
  const st = fs.fstatSync(imageFd);
  return st.isFile() ? st.size : Number.MAX_SAFE_INTEGER;
}

export function generationOf(imageFd: number): bigint {
  const b = Buffer.alloc(8);
  return fs.readSync(imageFd, b, 0, 8, SB_GENERATION) === 8 ? b.readBigUInt64LE(0) : 0n;
}

export const ZEROS = Buffer.alloc(64 << 10);
