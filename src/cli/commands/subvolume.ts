import { type Command, InvalidArgumentError } from 'commander';
import { BtrfsImage, type SubvolumeInfo } from '../../image/read/index.js';
import { formatUuid } from '../../image/structs.js';
import { degradedOption, deviceOption, devicesOf, readImage } from '../image-file.js';
import { uuidOrDash } from '../progs-format.js';
import { subvolumeShow } from '../subvolume-show.js';
import { type ListOptions, parseGenFilter, parseSort, progsList, wantsProgsList } from '../subvolume-list.js';
import { ImageError } from '../../errors.js';
import { deleteSubvolumes } from '../../tools/subvolume-delete.js';
import { createSubvolumes, getDefaultSubvolume, setDefaultSubvolume, snapshotSubvolume } from '../../tools/subvolume-ops.js';
import { staleKeyWarning } from '../../tools/snapshot-keys.js';

/** One line in `btrfs subvolume list -g -c -u -q -R` order and spelling, plus flags. */
export function subvolumeLine(s: SubvolumeInfo): string {
  return `ID ${s.id} gen ${s.generation} cgen ${s.otransid} top level ${s.parent} parent_uuid ${uuidOrDash(s.parentUuid).padEnd(36)} ` +
    `received_uuid ${uuidOrDash(s.receivedUuid).padEnd(36)} uuid ${uuidOrDash(s.uuid).padEnd(36)} ` +
    `ctransid ${s.ctransid} stransid ${s.stransid} rtransid ${s.rtransid} ${s.readonly ? 'ro' : 'rw'} path ${s.path}`;
}

export function register(program: Command): void {
  const sub = program.command('subvolume').description('subvolumes of a btrfs image');
  sub
    .command('list')
    .description('list the subvolumes of an image: with no option but -r, one line each as `btrfs subvolume list -g -c -u -q -R` prints it plus transids and ro/rw; with any of btrfs-progs\' options below (or a PATH), what `btrfs subvolume list` prints')
    .argument('<image>', 'btrfs image file')
    .argument('[path]', 'as the mount path btrfs subvolume list takes: paths below the subvolume holding it are shown from there (default: the top level)')
    .option('-r, --readonly', 'only read-only subvolumes')
    .option('-p', 'print the parent id')
    .option('-a', 'print every subvolume, "<FS_TREE>/" before those not directly in the PATH\'s subvolume')
    .option('-c', 'print the generation the subvolume was made in (cgen)')
    .option('-d', 'only subvolumes deleted but not cleaned up yet')
    .option('-g', 'print the generation (printed anyway)')
    .option('-o', 'only the subvolumes directly in the PATH\'s subvolume')
    .option('-t', 'print a table')
    .option('-s', 'only snapshots (with cgen and otime)')
    .option('-u', 'print the uuid')
    .option('-q', 'print the parent uuid')
    .option('-R', 'print the received uuid')
    .option('-G <[+|-]gen>', 'generation at least (+), at most (-) or exactly', parseGenFilter)
    .option('-C <[+|-]cgen>', 'creation generation at least (+), at most (-) or exactly', parseGenFilter)
    .option('--sort <keys>', 'rootid, gen, ogen, path, each with + or - (e.g. -ogen,+rootid)', parseSort)
    .addOption(deviceOption())
    .addOption(degradedOption())
    .action(async (image: string, path: string | undefined, o: ListOptions & { device: string[]; degraded?: boolean }) => {
      await readImage(image, async (src) => {
        const img = await BtrfsImage.open(src);
        // -d lists only the deleted ones: one pass over the root items either way
        const listed = await (o.d ? img.deletedSubvolumes() : img.listSubvolumes());
        const warning = staleKeyWarning(image, listed);
        if (warning) process.stderr.write(warning);
        if (wantsProgsList(o, path)) {
          const top = path === undefined ? 5n : (await img.resolve(path)).root;
          process.stdout.write(progsList(listed, top, o));
          return;
        }
        for (const s of listed) {
          if (s.id === 5n || (o.readonly && !s.readonly)) continue;
          process.stdout.write(subvolumeLine(s) + '\n');
        }
      }, devicesOf(o));
    });
  sub
    .command('show')
    .description('show a subvolume as `btrfs subvolume show` does: uuids, generations, times, flags, snapshots')
    .argument('<image>', 'btrfs image file')
    .argument('[path]', 'a path inside the image: the subvolume holding it is shown (default: the top level)', '/')
    .option('-r, --rootid <ID>', 'the subvolume of this id instead')
    .option('-u, --uuid <UUID>', 'the subvolume of this uuid instead')
    .addOption(deviceOption())
    .addOption(degradedOption())
    .action(async (image: string, path: string, o: { rootid?: string; uuid?: string; device: string[]; degraded?: boolean }) => {
      if (o.rootid !== undefined && o.uuid !== undefined) throw new ImageError('SHOW_USAGE', 'options --rootid and --uuid cannot be used at the same time');
      if (o.rootid !== undefined && !/^\d+$/.test(o.rootid)) throw new ImageError('SHOW_USAGE', `--rootid ${o.rootid}: not a subvolume id`);
      await readImage(image, async (src) => {
        const img = await BtrfsImage.open(src);
        const all = await img.listSubvolumes();
        const id = o.rootid !== undefined ? BigInt(o.rootid) : o.uuid === undefined ? (await img.resolve(path)).root : undefined;
        const sv = id !== undefined ? all.find((s) => s.id === id) : all.find((s) => formatUuid(s.uuid) === o.uuid!.toLowerCase());
        if (!sv) {
          const what = o.rootid !== undefined ? `id ${o.rootid}` : o.uuid !== undefined ? `uuid ${o.uuid}` : `holding ${JSON.stringify(path)}`;
          throw new ImageError('IMAGE_NO_SUBVOLUME', `no subvolume of ${what} in ${image}`);
        }
        const warning = staleKeyWarning(image, [sv]);
        if (warning) process.stderr.write(warning);
        if (!sv.readonly && sv.receivedUuid.some((b) => b !== 0)) {
          process.stderr.write("btrfs-ts: WARNING: the subvolume is read-write and has received_uuid set, don't use it for incremental send (btrfs-subvolume(8), SUBVOLUME FLAGS)\n");
        }
        process.stdout.write(await subvolumeShow(img, sv, all));
      }, devicesOf(o));
    });
  sub
    .command('delete')
    .description('delete subvolumes of an image and free their space at once, as `btrfs subvolume delete -c` followed by `btrfs subvolume sync` (no mount needed; all or nothing)')
    .argument('<image>', 'btrfs image file')
    .argument('[path...]', 'subvolume paths inside the image, from the top level')
    .option('-i, --subvolid <ID>', 'the subvolume of this id too (repeatable)', (v: string, acc: bigint[]) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError('not a subvolume id');
      return [...acc, BigInt(v)];
    }, [] as bigint[])
    .option('-c, --commit-after', 'accepted as btrfs subvolume delete takes it: the deletions are always committed, once, at the end')
    .option('-C, --commit-each', 'accepted likewise (all or nothing: one commit for all of them)')
    .option('-q, --quiet', 'print nothing but errors')
    .action(async (image: string, paths: string[], o: { subvolid: bigint[]; quiet?: boolean }) => {
      if (paths.length === 0 && o.subvolid.length === 0) throw new ImageError('SUBVOL_USAGE', 'no subvolume to delete: give a path or --subvolid');
      const done = await deleteSubvolumes(image, paths, o.subvolid);
      if (!o.quiet) for (const d of done) process.stdout.write(`Delete subvolume (commit): '${d.path}'\n`);
    });
  sub
    .command('snapshot')
    .description('snapshot a subvolume of an image as `btrfs subvolume snapshot` does (no mount needed): the snapshot shares the source\'s tree; DEST a new path, or an existing directory to hold a snapshot named after SOURCE')
    .argument('<image>', 'btrfs image file')
    .argument('<source>', 'subvolume path inside the image, from the top level (/ is the top level)')
    .argument('<dest>', 'new path inside the image, or an existing directory')
    .option('-r, --readonly', 'make a read-only snapshot')
    .action(async (image: string, source: string, dest: string, o: { readonly?: boolean }) => {
      const r = await snapshotSubvolume(image, source, dest, { readonly: o.readonly === true });
      process.stdout.write(`Create a ${r.readonly ? 'readonly ' : ''}snapshot of '${r.source}' in '${r.dest}'\n`);
    });
  sub
    .command('create')
    .description('create empty subvolumes in an image as `btrfs subvolume create` does (no mount needed; all at one commit)')
    .argument('<image>', 'btrfs image file')
    .argument('<path...>', 'new subvolume paths inside the image, from the top level')
    .action(async (image: string, paths: string[]) => {
      for (const c of await createSubvolumes(image, paths)) process.stdout.write(`Create subvolume '${c.path}'\n`);
    });
  sub
    .command('get-default')
    .description('print the default subvolume (what a mount without subvol= shows) as `btrfs subvolume get-default` does')
    .argument('<image>', 'btrfs image file')
    .action(async (image: string) => {
      const sv = await getDefaultSubvolume(image);
      process.stdout.write(sv ? `ID ${sv.id} gen ${sv.generation} top level ${sv.parent} path ${sv.path}\n` : 'ID 5 (FS_TREE)\n');
    });
  sub
    .command('set-default')
    .description('make a subvolume the default one (what a mount without subvol= shows) as `btrfs subvolume set-default` does')
    .argument('<image>', 'btrfs image file')
    .argument('<target>', 'a subvolume id (0 or 5: the top level), or a subvolume path inside the image (a name made of digits: write it ./NAME)')
    .action(async (image: string, target: string) => {
      await setDefaultSubvolume(image, /^\d+$/.test(target) ? BigInt(target) : target);
    });
}
