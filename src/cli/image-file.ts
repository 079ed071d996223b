import { Option } from 'commander';
import { mountedAs } from '../io/image-lock.js';
import { type DeviceOptions, openImageSource } from '../io/device-set.js';
import { type FileImageSource, type OpenImageOptions, withSource } from '../io/image-read-file.js';

/**
 * Says so when the kernel has the image mounted. Reading it still works, as btrfs-progs' dump-tree reads a
 * mounted device: what is read is the state of the kernel's last commit, since every tree block that
 * commit's superblock reaches stays as it is until the next commit. A command that runs across commits can
 * then meet blocks the kernel has reused (each one's checksum, bytenr and generation are checked, so that
 * is an error, not wrong output), and it never sees what the kernel holds uncommitted.
 */
function warnIfMounted(image: string): void {
  const how = mountedAs(image);
  if (how) {
    process.stderr.write(`btrfs-ts: WARNING: ${image} is mounted ${how}: reading the state of the kernel's last commit to it\n`);
  }
}

/** How a reading command opens its image: with the other devices (--device) and --degraded, if given. */
export interface ReadImageOptions extends OpenImageOptions, DeviceOptions {}

/**
 * The image, with the other devices given (`--device`), opened for reading after warnIfMounted (of each
 * file): the source a reading command gives BtrfsImage.open. Close it when done.
 */
export async function openForReading(path: string, opts: ReadImageOptions = {}): Promise<FileImageSource> {
  for (const p of [path, ...(opts.devices ?? [])]) warnIfMounted(p);
  return openImageSource(path, opts);
}

/** Runs `fn` on the image opened for reading (openForReading), always closing it. */
export async function readImage<T>(path: string, fn: (src: FileImageSource) => Promise<T>, opts: ReadImageOptions = {}): Promise<T> {
  return withSource(await openForReading(path, opts), fn);
}

/**
 * `--device FILE`, repeatable (and degradedOption's `--degraded`), for the commands that read an image:
 * as `mount -o device=FILE` names a device, and `mount -o degraded` mounts with some missing.
 */
export function deviceOption(): Option {
  return new Option('--device <FILE>', 'another device of a multi-device filesystem: an image file of it (repeatable)')
    .argParser((v: string, prev: string[]) => [...prev, v]).default([] as string[]);
}

/** The ReadImageOptions a command's `--device` and `--degraded` (deviceOption, degradedOption) ask for. */
export function devicesOf(o: { device: string[]; degraded?: boolean }): ReadImageOptions {
  return { devices: o.device, degraded: o.degraded === true };
}

/** See deviceOption. */
export function degradedOption(): Option {
  return new Option('--degraded', 'read a multi-device filesystem with devices missing: what has a copy on those given');
}
