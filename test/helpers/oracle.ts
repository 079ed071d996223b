import { spawnSync } from 'node:child_process';

/** Whether a command-line tool can be run here; tests print the reason when they skip. */
export function hasTool(cmd: string, args: string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.error === undefined;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** `btrfs receive --dump` of the given bytes, as the installed btrfs-progs prints it (TZ=UTC). */
export function progsDump(stream: Uint8Array): { stdout: Buffer; stderr: string; status: number | null } {
  const r = spawnSync('btrfs', ['receive', '--dump'], { input: stream, env: { ...process.env, TZ: 'UTC' }, maxBuffer: 1 << 30 });
  return { stdout: r.stdout, stderr: r.stderr.toString(), status: r.status };
}


/** Announces a skipped kernel/tool test on stderr so no skip is silent. */
export function skipReason(what: string, why: string): void {
  console.warn(`SKIP ${what}: ${why}`);
}
