import { mountedAs } from '../io/image-lock.js';
import { type FileImageSource, type OpenImageOptions, withImageFile } from '../io/image-read-file.js';

/**
 * Says so when the kernel has the image mounted. Reading it still works, as btrfs-progs' dump-tree reads a
 * mounted device: what is read is the state of the kernel's last commit, since every tree block that
 * commit's superblock reaches stays as it is until the next commit. A command that runs across commits can
 * then meet blocks the kernel has reused (each one's checksum, bytenr and generation are checked, so that
 * is an error, not wrong output), and it never sees what the kernel holds uncommitted.
 */
export function warnIfMounted(image: string): void {
  const how = mountedAs(image);
  if (how) {
    process.stderr.write(`btrfs-ts: WARNING: ${image} is mounted ${how}: reading the state of the kernel's last commit to it\n`);
  }
}

/** withImageFile for a command that reads the image, after warnIfMounted. */
export function readImage<T>(path: string, fn: (src: FileImageSource) => Promise<T>, opts: OpenImageOptions = {}): Promise<T> {
  warnIfMounted(path);
  return withImageFile(path, fn, opts);
}
