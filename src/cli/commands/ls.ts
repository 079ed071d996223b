import type { Command } from 'commander';
import { BtrfsImage, type Location } from '../../image/read/index.js';
import type { BtrfsInodeItem, BtrfsTimespec } from '../../image/structs.js';
import { degradedOption, deviceOption, devicesOf, readImage } from '../image-file.js';

const TYPE_CHARS: Record<number, string> = { 0o040000: 'd', 0o120000: 'l', 0o010000: 'p', 0o140000: 's', 0o020000: 'c', 0o060000: 'b', 0o100000: '-' };

/** `ls -l` style mode string, including setuid/setgid/sticky. */
export function modeString(mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string): string =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-');
  return (TYPE_CHARS[mode & 0o170000] ?? '?') + rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') + rwx(mode & 7, (mode & 0o1000) !== 0, 't');
}

/** UTC, nanosecond precision: `2024-05-01 12:00:00.123456789`. */
export function formatTime(t: BtrfsTimespec): string {
  const d = new Date(Number(t.sec) * 1000);
  const iso = Number.isNaN(d.getTime()) ? `@${t.sec}` : d.toISOString().slice(0, 19).replace('T', ' ');
  return `${iso}.${String(t.nsec).padStart(9, '0')}`;
}

async function longLine(img: BtrfsImage, loc: Location, st: BtrfsInodeItem, name: Buffer): Promise<Buffer> {
  const isDev = (st.mode & 0o170000) === 0o020000 || (st.mode & 0o170000) === 0o060000;
  const size = isDev ? `${(st.rdev >> 20n) & 0xfffn},${st.rdev & 0xfffffn}` : String(st.size);
  const head = `${modeString(st.mode)} ${String(st.nlink).padStart(3)} ${String(st.uid).padStart(5)} ${String(st.gid).padStart(5)} ${size.padStart(10)} ${formatTime(st.mtime)} `;
  const parts = [Buffer.from(head), name];
  if ((st.mode & 0o170000) === 0o120000) parts.push(Buffer.from(' -> '), Buffer.from(await img.readlink(loc)));
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

async function write(b: Buffer): Promise<void> {
  if (!process.stdout.write(b)) await new Promise<void>((r) => process.stdout.once('drain', () => r()));
}

export function register(program: Command): void {
  program
    .command('ls')
    .description('list a directory inside a btrfs image (no mount needed); subvolumes are crossed like directories')
    .argument('<image>', 'btrfs image file')
    .argument('[path]', 'path inside the image, from the top-level subvolume', '/')
    .option('-l, --long', 'long form: mode, links, uid, gid, size, mtime (UTC), name, symlink target')
    .option('-i, --inode', 'print the subvolume id and inode number first')
    .option('-d, --directory', 'list the directory itself, not its contents')
    .addOption(deviceOption())
    .addOption(degradedOption())
    .action(async (image: string, path: string, o: { long?: boolean; inode?: boolean; directory?: boolean; device: string[]; degraded?: boolean }) => {
      await readImage(image, async (src) => {
        const img = await BtrfsImage.open(src);
        const loc = await img.resolve(path);
        const st = await img.stat(loc);
        const line = async (l: Location, s: BtrfsInodeItem, name: Uint8Array): Promise<void> => {
          const prefix = o.inode ? Buffer.from(`${l.root}:${l.ino} `) : Buffer.alloc(0);
          const body = o.long ? await longLine(img, l, s, Buffer.from(name)) : Buffer.concat([Buffer.from(name), Buffer.from('\n')]);
          await write(Buffer.concat([prefix, body]));
        };
        if ((st.mode & 0o170000) !== 0o040000 || o.directory) {
          await line(loc, st, new TextEncoder().encode(path));
          return;
        }
        for await (const e of img.readdir(loc)) await line(e.location, await img.stat(e.location), e.name);
      }, devicesOf(o));
    });
}
