import type { FileImageSource } from '../io/image-read-file.js';
import { type DeviceOptions, openImageSource } from '../io/device-set.js';
import { BtrfsImage, type Location, type SubvolumeInfo } from './read/index.js';
import { timespecNs as ns, type BtrfsInodeItem } from './structs.js';

/**
 * A btrfs image file opened for reading by path, as node:fs reads a directory tree: `readdir`, `stat`,
 * `readFile`, `readlink`, `walk`, then `close` (or `await using`). Paths are '/'-separated from the top
 * level, crossing into subvolumes; names and paths are strings (UTF-8) with the raw bytes beside them for
 * names that are not. `image` is the lower-level reader (locations, xattrs, extents) for everything else.
 */
export interface ImageStat {
  ino: bigint;
  /** Subvolume (tree) the inode lives in. */
  subvolume: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: bigint;
  rdev: bigint;
  /** Times as Date (millisecond precision) and as nanoseconds since the epoch. */
  atime: Date;
  mtime: Date;
  ctime: Date;
  birthtime: Date;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  birthtimeNs: bigint;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

export interface ImageDirent {
  name: string;
  nameBytes: Uint8Array;
  /** 'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'char' | 'block' | 'unknown'. */
  type: string;
  /** Set when the entry is a subvolume: its id. */
  subvolume?: bigint;
}

export interface WalkEntry {
  /** '/'-separated path from where the walk started ('' for the start itself). */
  path: string;
  /** The same path as raw bytes (names need not be UTF-8; pass these back to stat/readFile). */
  pathBytes: Uint8Array;
  stat: ImageStat;
}

/** A path as a string (UTF-8) or as raw bytes. */
export type ImagePath = string | Uint8Array;

const TYPES = ['unknown', 'file', 'directory', 'char', 'block', 'fifo', 'socket', 'symlink'];
const S_IFMT = 0o170000;
const SLASH = Buffer.from('/');

/** Milliseconds rounded down (bigint division truncates toward zero: wrong before 1970). */
const ms = (n: bigint): Date => new Date(Number(n >= 0n ? n / 1_000_000n : -((-n + 999_999n) / 1_000_000n)));

function toStat(loc: Location, i: BtrfsInodeItem): ImageStat {
  const type = i.mode & S_IFMT;
  return {
    ino: loc.ino, subvolume: loc.root, mode: i.mode, nlink: i.nlink, uid: i.uid, gid: i.gid, size: i.size, rdev: i.rdev,
    atime: ms(ns(i.atime)), mtime: ms(ns(i.mtime)), ctime: ms(ns(i.ctime)), birthtime: ms(ns(i.otime)),
    atimeNs: ns(i.atime), mtimeNs: ns(i.mtime), ctimeNs: ns(i.ctime), birthtimeNs: ns(i.otime),
    isFile: () => type === 0o100000,
    isDirectory: () => type === 0o040000,
    isSymbolicLink: () => type === 0o120000,
  };
}

/** How openImage opens: `warn` for what a tree log's replay leaves out (default: stderr); the devices. */
export interface ImageOpenOptions extends DeviceOptions {
  warn?: (msg: string) => void;
}

const asyncDispose: typeof Symbol.asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose');

export class OpenImage {
  private closed = false;

  private constructor(readonly image: BtrfsImage, private readonly src: FileImageSource) {}

  /**
   * `devices`: image files of the other devices of a multi-device filesystem; `degraded`: read it with
   * some missing (io/device-set.ts).
   */
  static async open(path: string, opts: ImageOpenOptions = {}): Promise<OpenImage> {
    const src = await openImageSource(path, opts);
    try {
      return new OpenImage(await BtrfsImage.open(src, opts), src);
    } catch (e) {
      await src.close();
      throw e;
    }
  }

  async stat(path: ImagePath): Promise<ImageStat> {
    const loc = await this.image.resolve(path);
    return toStat(loc, await this.image.stat(loc));
  }

  async readdir(path: ImagePath): Promise<ImageDirent[]> {
    const out: ImageDirent[] = [];
    for await (const e of this.image.readdir(await this.image.resolve(path))) {
      out.push({
        name: Buffer.from(e.name).toString(), nameBytes: e.name, type: TYPES[e.type] ?? 'unknown',
        ...(e.subvolume !== undefined ? { subvolume: e.subvolume } : {}),
      });
    }
    return out;
  }

  /** The whole file in one Buffer (holes read as zeros); `createReadStream` for big files. */
  async readFile(path: ImagePath): Promise<Buffer> {
    const parts: Uint8Array[] = [];
    for await (const c of this.createReadStream(path)) parts.push(c);
    return Buffer.concat(parts);
  }

  /** The file's bytes in chunks of at most 1 MiB, data checksums verified. */
  async *createReadStream(path: ImagePath): AsyncGenerator<Uint8Array> {
    yield* this.image.readFile(await this.image.resolve(path));
  }

  async readlink(path: ImagePath): Promise<string> {
    return Buffer.from(await this.image.readlink(await this.image.resolve(path))).toString();
  }

  /** Every entry under `path` (itself first), depth first in directory-index order, into subvolumes. */
  async *walk(path: ImagePath = ''): AsyncGenerator<WalkEntry> {
    const start = await this.image.resolve(path);
    const stack: { loc: Location; rel: Buffer }[] = [{ loc: start, rel: Buffer.alloc(0) }];
    while (stack.length) {
      const { loc, rel } = stack.pop()!;
      const st = toStat(loc, await this.image.stat(loc));
      yield { path: rel.toString(), pathBytes: rel, stat: st };
      if (!st.isDirectory()) continue;
      const children: { loc: Location; rel: Buffer }[] = [];
      for await (const e of this.image.readdir(loc)) {
        children.push({ loc: e.location, rel: rel.length ? Buffer.concat([rel, SLASH, e.name]) : Buffer.from(e.name) });
      }
      for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]!);
    }
  }

  subvolumes(): Promise<SubvolumeInfo[]> {
    return this.image.listSubvolumes();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.src.close();
  }

  [asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Opens an image file for reading by path: `const img = await openImage('backup.img')`. */
export function openImage(path: string, opts: ImageOpenOptions = {}): Promise<OpenImage> {
  return OpenImage.open(path, opts);
}
