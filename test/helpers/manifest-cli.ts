import { Command } from 'commander';
import { vi } from 'vitest';
import { register } from '../../src/cli/commands/manifest.js';

/** Runs the real `manifest` command module on its own Command, capturing stdout and the exit code it sets. */
export async function runManifestCli(args: string[]): Promise<{ out: string; exitCode: number }> {
  const program = new Command().exitOverride();
  register(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1');
    return true;
  });
  const before = process.exitCode;
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'btrfs-ts', 'manifest', ...args]);
    return { out, exitCode: typeof process.exitCode === 'number' ? process.exitCode : 0 };
  } finally {
    spy.mockRestore();
    process.exitCode = before;
  }
}
