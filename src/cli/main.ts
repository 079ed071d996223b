import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import { registerCommands } from './commands/index.js';
import { describeFailure, EXIT_OK, EXIT_STATUS_HELP, EXIT_USAGE } from './failure.js';
import { stopNow } from './interrupt.js';

/**
 * Ctrl-C in a command that does not stop cleanly by itself (receive does) ends the process with 130, as
 * a shell reports a SIGINT death; a command with its own handler (interrupt.ts) keeps control.
 */
function exitOnSignal(sig: NodeJS.Signals): void {
  if (process.listenerCount(sig) > 1) return;
  // the same one line as a command that stops by itself, so a script sees why
  stopNow(sig);
}

/** Usage errors: one line, then where to look, as GNU tools do — not the whole help. */
function usageLine(cmd: Command) {
  return (str: string, write: (s: string) => void): void => {
    const msg = str.trim().replace(/^error: /, '').split('\n')[0];
    const names: string[] = [];
    for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
    const name = names.join(' ');
    write(`btrfs-ts: ${msg}\nTry '${name} --help' for more information.\n`);
  };
}

/** Exit codes: see EXIT_STATUS_HELP (0 ok, 1 failure, 2 usage, 70 internal bug, 130 interrupted). */
export async function main(argv: string[]): Promise<number> {
  const program = new Command();
  program
    .name('btrfs-ts')
    .description('Process btrfs send streams without a kernel: dump them, receive them into a btrfs image file')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .addHelpText('after', EXIT_STATUS_HELP);
  await registerCommands(program, argv);
  // after registering, so each subcommand names itself in its "Try" line
  const configure = (c: Command): void => {
    c.configureOutput({ outputError: usageLine(c) });
    c.commands.forEach(configure);
  };
  configure(program);
  process.on('SIGINT', exitOnSignal);
  process.on('SIGTERM', exitOnSignal);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const f = describeFailure(err);
    if (!f) throw err;
    process.stderr.write(`${f.line}\n`);
    return f.status;
  } finally {
    process.off('SIGINT', exitOnSignal);
    process.off('SIGTERM', exitOnSignal);
  }
}
