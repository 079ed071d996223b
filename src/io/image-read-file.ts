import { promises as fsp } from 'node:fs';
import { ImageError } from '../errors.js';
import type { ImageSource } from '../image/read/source.js';

/** A read-only ImageSource on an image file (or block device), with positional reads. */
export interface FileImageSource extends ImageSource {
  close(): Promise<void>;
}

export async function openImageFile(path: string): Promise<FileImageSource> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (err) {
    throw new ImageError('IMAGE_OPEN', `cannot open image ${path}: ${(err as Error).message}`, { cause: err });
  }
  const st = await fh.stat({ bigint: true });
  let size = st.size;
  if (st.isBlockDevice()) {
    // st_size is 0 for block devices; the end is found by seeking, which FileHandle lacks, so read-probe it.
    size = 1n << 62n;
  }
  return {
    size: () => size,
    async read(offset: bigint, len: number): Promise<Uint8Array> {
      const out = new Uint8Array(len);
      let done = 0;
      while (done < len) {
        let n: number;
        try {
          ({ bytesRead: n } = await fh.read(out, done, len - done, Number(offset) + done));
        } catch (err) {
          throw new ImageError('IMAGE_READ', `read of ${len} bytes at ${offset} in ${path} failed: ${(err as Error).message}`, { offset, cause: err });
        }
        if (n === 0) break; // past the end: the rest stays zero
        done += n;
      }
      return out;
    },
    close: () => fh.close(),
  };
}

/** Opens an image file for the CLI, runs `fn`, always closes it. */
export async function withImageFile<T>(path: string, fn: (src: FileImageSource) => Promise<T>): Promise<T> {
  const src = await openImageFile(path);
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
