import type { Command } from 'commander';
import { ImageError } from '../../errors.js';
import { getSubvolumeReadonly, setSubvolumeReadonly } from '../../tools/subvolume-ops.js';

/** `btrfs property get/set` for the one property of a subvolume: ro. */
export function register(program: Command): void {
  const prop = program.command('property').description('the ro property of subvolumes of an image, as `btrfs property get/set` (no mount needed)');
  prop
    .command('get')
    .description('print ro=true or ro=false for the subvolume at PATH')
    .argument('<image>', 'btrfs image file')
    .argument('<path>', 'subvolume path inside the image, from the top level')
    .argument('[name]', 'the property: ro (the only one; printed without it too)')
    .action(async (image: string, path: string, name: string | undefined) => {
      if (name !== undefined && name !== 'ro') throw new ImageError('PROPERTY_UNKNOWN', `unknown property: ${name} (btrfs-ts knows ro)`);
      process.stdout.write(`ro=${await getSubvolumeReadonly(image, path)}\n`);
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
      if (name !== 'ro') throw new ImageError('PROPERTY_UNKNOWN', `unknown property: ${name} (btrfs-ts knows ro)`);
      if (value !== 'true' && value !== 'false') throw new ImageError('PROPERTY_VALUE', `invalid value for property: ${value}`);
      const r = await setSubvolumeReadonly(image, path, value === 'true', { force: o.force === true });
      if (r.warning) process.stderr.write(`btrfs-ts: WARNING: ${r.warning}\n`);
    });
}
