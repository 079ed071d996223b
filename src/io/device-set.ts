import { ImageError } from '../errors.js';
import type { DeviceRegions } from '../image/read/chunk-map.js';
import { type CopyLayout, locate } from '../image/read/stripes.js';
import { readSuperblock } from '../image/read/superblock.js';
import { formatUuid } from '../image/structs.js';
import { placeInto, sameBytes, uninitBytes } from '../util/bytes.js';
import { type FileImageSource, type OpenImageOptions, openImageFile } from './image-read-file.js';

/** Source offsets from 2^48 on are regions (a chunk's copy each); below, the image's own bytes (its superblocks). */
const REGION_SHIFT = 48n;
const IN_REGION = (1n << REGION_SHIFT) - 1n;

interface Device { path: string; src: FileImageSource }

/** The other devices of a multi-device filesystem, as a reading command (--device, --degraded) or openImage is given them. */
export interface DeviceOptions {
  devices?: readonly string[];
  degraded?: boolean;
}

/** An image to read: the file alone, or through its devices (openDeviceSet) where any are given or `degraded` asked. */
export function openImageSource(path: string, opts: OpenImageOptions & DeviceOptions = {}): Promise<FileImageSource> {
  return opts.devices?.length || opts.degraded ? openDeviceSet(path, opts.devices ?? [], opts) : openImageFile(path, opts);
}

/**
 * A multi-device filesystem (mkfs.btrfs of several devices, `btrfs device add`) read from image files of
 * its devices, as `mount -o device=FILE` finds them: the image named first gives the superblock, and every
 * other device given must be one of the same filesystem (fsid), each devid once, all at the image's
 * generation — a device imaged at another time would mix two states of the trees. Fewer devices than
 * the superblock counts are refused unless `degraded` (`mount -o degraded`): then chunks whose copies need
 * a device not given are still read through another copy, and where none can be, a read of them is an
 * error naming the devid missing (chunk-map.ts). Nothing is written: the writer takes one device.
 */
export async function openDeviceSet(path: string, others: readonly string[], opts: OpenImageOptions & Pick<DeviceOptions, 'degraded'> = {}): Promise<FileImageSource> {
  const opened: FileImageSource[] = [];
  const open = async (p: string): Promise<FileImageSource> => {
    const src = await openImageFile(p, opts);
    opened.push(src);
    return src;
  };
  try {
    const primary = await open(path);
    const sb = await readSuperblock(primary);
    const devices = new Map<bigint, Device>([[sb.dev_item.devid, { path, src: primary }]]);
    for (const p of others) {
      const src = await open(p);
      const d = await readSuperblock(src).catch((e: unknown) => {
        throw e instanceof ImageError ? new ImageError(e.code, `device ${p}: ${e.message}`, { cause: e }) : e;
      });
      const devid = d.dev_item.devid;
      if (!sameBytes(d.fsid, sb.fsid)) {
        throw new ImageError('IMAGE_DEVICE_MISMATCH', `device ${p} belongs to filesystem ${formatUuid(d.fsid)}, ${path} to ${formatUuid(sb.fsid)}`);
      }
      const twin = devices.get(devid);
      if (twin) throw new ImageError('IMAGE_DEVICE_MISMATCH', `device ${p} is devid ${devid}, as ${twin.path} is`);
      if (d.generation !== sb.generation) {
        throw new ImageError('IMAGE_DEVICE_MISMATCH', `device ${p} was last written at generation ${d.generation}, ${path} at ${sb.generation}: not one state of the filesystem`);
      }
      devices.set(devid, { path: p, src });
    }
    if (BigInt(devices.size) < sb.num_devices && !opts.degraded) {
      const ids = [...devices.keys()].sort((a, b) => (a < b ? -1 : 1)).join(', ');
      throw new ImageError('IMAGE_MISSING_DEVICE', `the filesystem has ${sb.num_devices} devices, ${devices.size} given (devid ${ids}): give the others with --device FILE, or read what has a copy on these with --degraded`);
    }
    return deviceSetSource(primary, devices);
  } catch (e) {
    for (const s of opened) await s.close();
    throw e;
  }
}

/** Reads of `primary`'s own bytes, and of the regions the chunk map registers through `devices`. */
function deviceSetSource(primary: FileImageSource, devices: ReadonlyMap<bigint, Device>): FileImageSource {
  const regions: CopyLayout[] = [];
  const regionsOf: DeviceRegions = {
    has: (devid) => devices.has(devid),
    region(layout) {
      regions.push(layout);
      return BigInt(regions.length) << REGION_SHIFT;
    },
  };
  // no `path` or `fd`: the send's threads and addon read one file at physical offsets (send/index.ts, extent-head.ts)
  return {
    devices: regionsOf,
    size: () => primary.size!(),
    async read(offset: bigint, len: number, into?: Uint8Array): Promise<Uint8Array> {
      if (offset <= IN_REGION) return primary.read(offset, len, into);
      const layout = regions[Number(offset >> REGION_SHIFT) - 1];
      if (!layout) throw new ImageError('IMAGE_READ', `read at ${offset}: no such region of the devices`, { offset });
      const out = into && into.length >= len ? into.subarray(0, len) : uninitBytes(len);
      let o = offset & IN_REGION;
      for (let done = 0; done < len;) {
        // a striped copy is read a stripe at a time, each from its device
        const at = locate(layout, o);
        const n = at.run < BigInt(len - done) ? Number(at.run) : len - done;
        const got = await devices.get(at.devid)!.src.read(at.physical, n, out.subarray(done, done + n));
        placeInto(out, got, done);
        done += n;
        o += BigInt(n);
      }
      return out;
    },
    async close() {
      for (const d of devices.values()) await d.src.close();
    },
  };
}
