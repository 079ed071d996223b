import { constants, promises as fsp } from 'node:fs';
import { createServer } from 'node:net';
import { BtrfsTsError } from '../errors.js';
import type { BtrfsImage, Location } from '../image/read/index.js';
import { throughShortPath } from '../io/long-paths.js';

/** Making the entries of an extracted tree that take more than a syscall: files with holes, sockets. */

/**
 * Writes a regular file's data where it belongs and leaves holes (and prealloc ranges) as holes: a
 * sparse file of terabytes costs what its data costs. The size is set last with ftruncate.
 */
export async function writeFileKeepingHoles(img: BtrfsImage, loc: Location, p: Buffer, onData?: (bytes: number) => void): Promise<void> {
  const st = await img.stat(loc);
  // write() and ftruncate() take positions as doubles here: beyond 2^53 they would land elsewhere
  const limit = BigInt(Number.MAX_SAFE_INTEGER);
  if (st.size > limit) throw new BtrfsTsError('EXTRACT_TOO_BIG', `cannot extract ${p.toString('latin1')}: size ${st.size} is beyond ${limit} bytes`);
  const fh = await throughShortPath(p, (s) => fsp.open(s, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600));
  try {
    let pos = 0n;
    let dataEnd = 0n;
    for await (const seg of img.fileSegments(loc)) {
      if ('zeros' in seg) {
        pos += seg.zeros;
        continue;
      }
      for (let done = 0; done < seg.data.length;) {
        const { bytesWritten } = await fh.write(seg.data, done, seg.data.length - done, Number(pos) + done);
        done += bytesWritten;
      }
      pos += BigInt(seg.data.length);
      dataEnd = pos;
      onData?.(seg.data.length);
    }
    // a trailing hole (or no data at all) only needs the size: one more syscall, only when there is one
    if (dataEnd < st.size) await fh.truncate(Number(st.size));
  } finally {
    await fh.close();
  }
}

/** A socket inode is made by binding a listener to a temporary path (short enough for sun_path). */
export async function makeSocket(root: Buffer, p: Buffer, warn: (m: string) => void): Promise<boolean> {
  const tmp = Buffer.concat([root, Buffer.from(`/.btrfs-ts-sock-${process.pid}`)]).toString('latin1');
  if (Buffer.byteLength(tmp) > 100) {
    warn(`skipping socket ${p.toString('latin1')}: destination path too long to bind a socket`);
    return false;
  }
  try {
    const srv = createServer();
    await new Promise<void>((res, rej) => {
      srv.once('error', rej);
      srv.listen(tmp, () => res());
    });
    // libuv unlinks a bound path when the listener closes: keep the inode under its real name first.
    try {
      await throughShortPath(p, (s) => fsp.link(tmp, s));
    } finally {
      await new Promise<void>((res) => srv.close(() => res()));
    }
    return true;
  } catch (err) {
    warn(`skipping socket ${p.toString('latin1')}: ${(err as Error).message}`);
    return false;
  }
}
