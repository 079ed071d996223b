import { Command, CommanderError } from 'commander';
import { BtrfsTsError } from '../errors.js';
import { VERSION } from '../version.js';
import { registerCommands } from './commands/index.js';

/** Exit codes: 0 ok, 1 a diagnosed failure (bad stream, refused input), 2 usage, 70 internal bug. */
export async function main(argv: string[]): Promise<number> {
  const program = new Command();
  program
    .name('btrfs-ts')
    .description('Process btrfs send streams without a kernel: dump them, receive them into a btrfs image file')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError();
  registerCommands(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof BtrfsTsError) {
      process.stderr.write(`btrfs-ts: ERROR: ${err.describe()}\n`);
      return 1;
    }
    throw err;
  }
}
