import type { Command } from 'commander';
import { ImageError } from '../../errors.js';
import { getProperties, setSubvolumeReadonly } from '../../tools/subvolume-ops.js';

/** `btrfs property get` (ro, label, compression) and `btrfs property set` of a subvolume's ro. */
export function register(program: Command): void {
  const prop = program.command('property').description('properties of an image\'s subvolumes and files, as `btrfs property get/set` (set: ro only; no mount needed)');
  prop
    .command('get')
    .description('print properties as `btrfs property get` does: ro of a subvolume, label of the filesystem (at the top level), compression of a file or directory when set')
    .argument('<image>', 'btrfs image file')
    .argument('<path>', 'a path inside the image, from the top level')
    .argument('[name]', 'ro, label or compression (default: every one that applies)')
    .action(async (image: string, path: string, name: string | undefined) => {
      for (const line of await getProperties(image, path, name)) process.stdout.write(`${line}\n`);
    });
  prop
    .command('set')
    .description('make the subvolume at PATH read-only or writable; a read-only received subvolume is made writable only with -f, and then loses its received uuid (as btrfs-progs does)')
    .argument('<image>', 'btrfs image file')
    .argument('<path>', 'subvolume path inside the image, from the top level')
    .argument('<name>', 'the property: ro')
    .argument('<value>', 'true or false')
    .option('-f, --force', 'make a received read-only subvolume writable (its received uuid is cleared)')
    .action(async (image: string, path: string, name: string, value: string, o: { force?: boolean }) => {
      if (name !== 'ro') throw new ImageError('PROPERTY_UNKNOWN', name === 'label' || name === 'compression' ? `property set ${name}: btrfs-ts sets only ro` : `unknown property: ${name}`);
      if (value !== 'true' && value !== 'false') throw new ImageError('PROPERTY_VALUE', `invalid value for property: ${value}`);
      const r = await setSubvolumeReadonly(image, path, value === 'true', { force: o.force === true });
      if (r.warning) process.stderr.write(`btrfs-ts: WARNING: ${r.warning}\n`);
    });
}
