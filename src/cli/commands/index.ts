import type { Command } from 'commander';

interface CommandModule {
  register(program: Command): void;
}

/**
 * Each command lives in its own module and registers itself here, so commands can be added without
 * touching each other. Modules are imported on demand: a run loads only the command it runs (start-up
 * is node's module loading, most of it codecs and image code that `dump` never touches); help and
 * unknown commands load them all, `--version` none. Order here is the order of the help listing.
 */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  dump: () => import('./dump.js'),
  plan: () => import('./plan.js'),
  receive: () => import('./receive.js'),
  replay: () => import('./replay.js'),
  manifest: () => import('./manifest.js'),
  mkfs: () => import('./mkfs.js'),
  ls: () => import('./ls.js'),
  cat: () => import('./cat.js'),
  subvolume: () => import('./subvolume.js'),
  property: () => import('./property.js'),
  compsize: () => import('./compsize.js'),
  qgroup: () => import('./qgroup.js'),
  quota: () => import('./quota.js'),
  rescue: () => import('./rescue.js'),
  extract: () => import('./extract.js'),
  'extract-stream': () => import('./extract-stream.js'),
  verify: () => import('./verify.js'),
  convert: () => import('./convert.js'),
  send: () => import('./send.js'),
};

/** The command names `argv` (node, script, args...) needs registered to be parsed. */
export function commandsFor(argv: readonly string[]): string[] {
  const first = argv[2];
  if (first === '-V' || first === '--version') return [];
  if (first !== undefined && Object.hasOwn(COMMANDS, first)) return [first];
  return Object.keys(COMMANDS);
}

export async function registerCommands(program: Command, argv: readonly string[]): Promise<void> {
  const modules = await Promise.all(commandsFor(argv).map((name) => COMMANDS[name]!()));
  for (const m of modules) m.register(program);
}
