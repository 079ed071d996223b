import { open } from 'node:fs/promises';
import { ImageError } from '../errors.js';

/** Reads the sector size from an image's primary superblock (64 KiB in; field at 0x90). */
export async function imageSectorsize(path: string): Promise<number> {
  const fh = await open(path, 'r').catch((e: Error) => {
    throw new ImageError('IMAGE_OPEN', `cannot open ${path}: ${e.message}`);
  });
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, 4096, 65536);
    if (bytesRead < 4096 || buf.toString('latin1', 0x40, 0x48) !== '_BHRfS_M') {
      throw new ImageError('NOT_BTRFS', `${path} has no btrfs superblock at 64 KiB`, { offset: 65536 });
    }
    return buf.readUInt32LE(0x90);
  } finally {
    await fh.close();
  }
}
