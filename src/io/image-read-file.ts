import { closeSync, fstatSync, openSync, promises as fsp, readSync } from 'node:fs';
import { ImageError } from '../errors.js';
import type { ImageSource } from '../image/read/source.js';
import { uninitBytes } from '../util/bytes.js';

/** A read-only ImageSource on an image file (or block device), with positional reads. */
export interface FileImageSource extends ImageSource {
  close(): Promise<void>;
}

export interface OpenImageOptions {
  /**
   * Read with pread(2) on the calling thread instead of the thread pool. Each read is then far cheaper
   * (no round trip through libuv: a send makes tens of thousands of small reads, nearly all from the page
   * cache), but blocks the event loop while it lasts: for command-line tools, not servers.
   */
  blocking?: boolean;
}

export async function openImageFile(path: string, opts: OpenImageOptions = {}): Promise<FileImageSource> {
  if (opts.blocking) return openBlocking(path);
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (err) {
    throw openError(path, err);
  }
  const st = await fh.stat({ bigint: true });
  return source(path, fh.fd, st.isBlockDevice() ? BLOCK_DEVICE_SIZE : st.size, async (out, at, len, offset) => (await fh.read(out, at, len, offset)).bytesRead, () => fh.close());
}

/**
 * The blocking source, opened on the calling thread too: no FileHandle, so node:fs's promises API (ten
 * modules: fs/dir, watchers, readline, ...) is not loaded for it, and no two round trips through the pool
 * before the first read (a send's start: docs/performance.md, fourteenth session, incr18).
 */
function openBlocking(path: string): FileImageSource {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw openError(path, err);
  }
  let size: bigint;
  try {
    const st = fstatSync(fd, { bigint: true });
    size = st.isBlockDevice() ? BLOCK_DEVICE_SIZE : st.size;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return source(path, fd, size, (out, at, len, offset) => readSync(fd, out, at, len, offset), async () => closeSync(fd));
}

/** st_size is 0 for block devices; the end is found by seeking, which FileHandle lacks, so read-probe it. */
const BLOCK_DEVICE_SIZE = 1n << 62n;

function openError(path: string, err: unknown): ImageError {
  return new ImageError('IMAGE_OPEN', `cannot open image ${path}: ${(err as Error).message}`, { cause: err });
}

/** `readAt` reads up to `len` bytes at file offset `offset` into out[at..], returning how many (0 at the end). */
function source(
  path: string, fd: number, size: bigint,
  readAt: (out: Uint8Array, at: number, len: number, offset: number) => number | Promise<number>, close: () => Promise<void>,
): FileImageSource {
  return {
    path,
    fd,
    size: () => size,
    async read(offset: bigint, len: number, into?: Uint8Array): Promise<Uint8Array> {
      // not zero-filled: every byte is read, or zeroed past the end below
      const out = into && into.length >= len ? into.subarray(0, len) : uninitBytes(len);
      let done = 0;
      while (done < len) {
        let n: number;
        try {
          // a blocking read's number is taken as it is: an await of it would cost a turn of the microtask queue per read
          const r = readAt(out, done, len - done, Number(offset) + done);
          n = typeof r === 'number' ? r : await r;
        } catch (err) {
          throw new ImageError('IMAGE_READ', `read of ${len} bytes at ${offset} in ${path} failed: ${(err as Error).message}`, { offset, cause: err });
        }
        if (n === 0) {
          out.fill(0, done); // past the end: zeros
          break;
        }
        done += n;
      }
      return out;
    },
    close,
  };
}

/** Opens an image file, runs `fn`, always closes it. */
export async function withImageFile<T>(path: string, fn: (src: FileImageSource) => Promise<T>, opts: OpenImageOptions = {}): Promise<T> {
  return withSource(await openImageFile(path, opts), fn);
}

/** Runs `fn` on `src`, then closes it, whatever `fn` did. */
export async function withSource<T>(src: FileImageSource, fn: (src: FileImageSource) => Promise<T>): Promise<T> {
  try {
    return await fn(src);
  } finally {
    await src.close();
  }
}

/** Splits `IMAGE[:PATH]`; an existing file whose name contains ':' wins over the split. */
export async function splitImageArg(arg: string): Promise<{ image: string; path: string }> {
  const i = arg.lastIndexOf(':');
  if (i <= 0) return { image: arg, path: '' };
  const exists = await fsp.stat(arg).then(() => true, () => false);
  return exists ? { image: arg, path: '' } : { image: arg.slice(0, i), path: arg.slice(i + 1) };
}
