import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { commandsFor, registerCommands } from '../src/cli/commands/index.js';

// Start-up loads only the command being run; help and unknown commands still see every command.
describe('commands imported on demand', () => {
  const argv = (...args: string[]) => ['node', 'btrfs-ts', ...args];

  it('a known command loads itself only, --version none, anything else all', () => {
    expect(commandsFor(argv('dump', '-f', 'x'))).toEqual(['dump']);
    expect(commandsFor(argv('extract-stream', 'd'))).toEqual(['extract-stream']);
    expect(commandsFor(argv('--version'))).toEqual([]);
    expect(commandsFor(argv('-V'))).toEqual([]);
    const all = commandsFor(argv('--help'));
    expect(all).toContain('receive');
    expect(all.length).toBeGreaterThan(10);
    expect(commandsFor(argv())).toEqual(all);
    expect(commandsFor(argv('help', 'dump'))).toEqual(all);
    expect(commandsFor(argv('nosuch'))).toEqual(all);
    expect(commandsFor(argv('toString'))).toEqual(all); // not an inherited property taken for a command
  });

  it('registers exactly the selected commands, under the names they are selected by', async () => {
    const one = new Command();
    await registerCommands(one, argv('subvolume', 'list', 'img'));
    expect(one.commands.map((c) => c.name())).toEqual(['subvolume']);
    const every = new Command();
    await registerCommands(every, argv('--help'));
    expect(every.commands.map((c) => c.name())).toEqual(commandsFor(argv('--help')));
  });
});
