import { ImageError } from '../errors.js';
import type { BtrfsImage, Location } from '../image/read/index.js';
import {
  BTRFS_EXTENT_DATA_KEY, BTRFS_FILE_EXTENT_INLINE, BTRFS_FILE_EXTENT_PREALLOC, BTRFS_FT_DIR, BTRFS_FT_REG_FILE, BTRFS_FT_UNKNOWN, U64_MAX,
} from '../image/structs/constants.js';
import { BTRFS_FILE_EXTENT_INLINE_DATA_START, BTRFS_FILE_EXTENT_ITEM_SIZE, decodeFileExtentItem } from '../image/structs/fs-items.js';

/** Row of prealloc extents: after the 256 compression types a u8 can name, as compsize keeps it. */
export const PREALLOC_ROW = 256;

/** What compsize (btrfs-compsize 1.5) adds up, per row: compression type 0-255, PREALLOC_ROW. */
export interface CompsizeTotals {
  disk: Map<number, bigint>;
  uncompressed: Map<number, bigint>;
  referenced: Map<number, bigint>;
  files: number;
  extents: number;
  refs: number;
  inline: number;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/**
 * compsize's walk over an image instead of a mount: every regular file under each start (directories
 * entered in readdir order, depth first; symlinks and special files passed over; subvolumes crossed
 * unless `oneFileSystem`, where each has its own st_dev on a mount), and each file's EXTENT_DATA items
 * added up as compsize adds them: an inline extent's stored bytes (item size less its 21-byte header)
 * as disk, ram_bytes as uncompressed and referenced; a regular or prealloc extent's disk_num_bytes and
 * ram_bytes once per extent (by its first 4 KiB page), num_bytes for every reference; holes not at all.
 * A start that does not exist is passed over, as compsize passes over what open(2) does not find.
 */
export async function compsize(img: BtrfsImage, starts: readonly string[], oneFileSystem = false): Promise<CompsizeTotals> {
  const t: CompsizeTotals = { disk: new Map(), uncompressed: new Map(), referenced: new Map(), files: 0, extents: 0, refs: 0, inline: 0 };
  const seen = new Set<bigint>();
  const add = (m: Map<number, bigint>, row: number, n: bigint): void => {
    m.set(row, (m.get(row) ?? 0n) + n);
  };

  const file = async (loc: Location): Promise<void> => {
    t.files++;
    const tree = await img.reader.tree(loc.root);
    const from = { objectid: loc.ino, type: BTRFS_EXTENT_DATA_KEY, offset: 0n };
    const to = { objectid: loc.ino, type: BTRFS_EXTENT_DATA_KEY, offset: U64_MAX };
    for await (const it of img.reader.trees.iterate(tree, from, to)) {
      const fe = decodeFileExtentItem(it.data);
      const where = { offset: it.key.offset, command: 'btrfs_file_extent_item' };
      if (fe.type === BTRFS_FILE_EXTENT_INLINE) {
        add(t.disk, fe.compression, BigInt(it.data.length - BTRFS_FILE_EXTENT_INLINE_DATA_START));
        add(t.uncompressed, fe.compression, fe.ram_bytes);
        add(t.referenced, fe.compression, fe.ram_bytes);
        t.inline++;
        continue;
      }
      if (it.data.length !== BTRFS_FILE_EXTENT_ITEM_SIZE) {
        throw new ImageError('IMAGE_BAD_FILE_EXTENT', `inode ${loc.ino} in subvolume ${loc.root}: regular extent item of ${it.data.length} bytes, not ${BTRFS_FILE_EXTENT_ITEM_SIZE}`, where);
      }
      if (fe.disk_bytenr === 0n) continue; // a hole
      if (fe.disk_bytenr % 4096n !== 0n) {
        throw new ImageError('IMAGE_BAD_FILE_EXTENT', `inode ${loc.ino} in subvolume ${loc.root}: extent at ${fe.disk_bytenr} is not 4 KiB aligned`, where);
      }
      const row = fe.type === BTRFS_FILE_EXTENT_PREALLOC ? PREALLOC_ROW : fe.compression;
      const page = fe.disk_bytenr >> 12n;
      if (!seen.has(page)) {
        seen.add(page);
        add(t.disk, row, fe.disk_num_bytes);
        add(t.uncompressed, row, fe.ram_bytes);
        t.extents++;
      }
      add(t.referenced, row, fe.num_bytes);
      t.refs++;
    }
  };

  const walk = async (loc: Location, mode: number): Promise<void> => {
    if ((mode & S_IFMT) === S_IFDIR) {
      for await (const e of img.readdir(loc)) {
        // compsize looks at directories, regular files and entries of unknown type only
        if (e.type !== BTRFS_FT_DIR && e.type !== BTRFS_FT_REG_FILE && e.type !== BTRFS_FT_UNKNOWN) continue;
        // another subvolume is another st_dev on a mount (a snapshot's placeholder directory is not)
        if (oneFileSystem && e.location.root !== loc.root) continue;
        await walk(e.location, (await img.stat(e.location)).mode);
      }
    } else if ((mode & S_IFMT) === S_IFREG) {
      await file(loc);
    }
  };

  for (const start of starts) {
    let loc: Location;
    try {
      loc = await img.resolve(start);
    } catch (e) {
      if (e instanceof ImageError && e.code === 'IMAGE_NO_ENTRY') continue;
      throw e;
    }
    await walk(loc, (await img.stat(loc)).mode);
  }
  return t;
}

/** compsize's size column: bytes, or its own rounding (x.yU from 10 KiB on, then the unit). */
function size(x: bigint, bytes: boolean): string {
  if (bytes) return String(x);
  const units = 'BKMGTPE';
  let u = 0;
  while (x >= 10240n) {
    u++;
    x >>= 10n;
  }
  if (x >= 1024n) return ` ${x >> 10n}.${((x * 10n) / 1024n) % 10n}${units[u + 1]}`;
  return `${String(x).padStart(4)}${units[u]}`;
}

function row(type: string, perc: string, disk: string, uncomp: string, refd: string): string {
  return `${type.padEnd(10)} ${perc.padEnd(8)} ${disk.padEnd(12)} ${uncomp.padEnd(12)} ${refd.padEnd(12)}\n`;
}

const TYPE_NAMES = ['none', 'zlib', 'lzo', 'zstd'];

/**
 * The report compsize 1.5 prints for `t` (`bytes`: its -b), or undefined with the line it writes to
 * standard error instead (and exits 1 with) when there is nothing to report.
 */
export function formatCompsize(t: CompsizeTotals, bytes = false): { out?: string; err?: string } {
  const sum = (m: Map<number, bigint>): bigint => [...m.values()].reduce((a, b) => a + b, 0n);
  const uncomp = sum(t.uncompressed);
  if (uncomp === 0n) return { err: t.files === 0 ? 'No files.\n' : 'All empty or still-delalloced files.\n' };
  // (percentages as compsize computes them: integer division, kept to 32 bits)
  const perc = (d: bigint, u: bigint): string => `${String(BigInt.asUintN(32, (d * 100n) / u)).padStart(3)}%`;
  let out = `Processed ${t.files} file${t.files > 1 ? 's' : ''}, ${t.extents} regular extents (${t.refs} refs), ${t.inline} inline.\n`;
  out += row('Type', 'Perc', 'Disk Usage', 'Uncompressed', 'Referenced');
  const disk = sum(t.disk);
  out += row('TOTAL', perc(disk, uncomp), size(disk, bytes), size(uncomp, bytes), size(sum(t.referenced), bytes));
  for (let r = 0; r <= PREALLOC_ROW; r++) {
    const u = t.uncompressed.get(r) ?? 0n;
    if (u === 0n) continue;
    const d = t.disk.get(r) ?? 0n;
    const name = r === PREALLOC_ROW ? 'prealloc' : TYPE_NAMES[r] ?? `?${r}`;
    out += row(name, perc(d, u), size(d, bytes), size(u, bytes), size(t.referenced.get(r) ?? 0n, bytes));
  }
  return { out };
}
