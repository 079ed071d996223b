import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import path from 'node:path';
import { dirTreeSource } from '../src/dirtree/source.js';
import { formatManifest } from '../src/manifest/format.js';

/** Shared helpers of the image writer tests: btrfs-progs and kernel oracles. */

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export const haveBtrfsProgs = spawnSync('btrfs', ['--version']).status === 0;

/** Root with working loop devices: mount tests can run. */
export const canMount = ((): boolean => {
  if (process.getuid?.() !== 0) return false;
  if (!fs.existsSync('/dev/loop-control')) return false;
  return spawnSync('losetup', ['-f']).status === 0;
})();

export function skipReason(kind: 'progs' | 'mount'): string | undefined {
  if (!haveBtrfsProgs) return 'btrfs-progs (btrfs) not installed';
  if (kind === 'mount' && !canMount) return 'not root or no loop devices: kernel mount tests skipped';
  return undefined;
}

/**
 * `btrfs check --readonly`: returns its whole output. The caller asserts it is clean: exit 0, "no error
 * found", and no line that reports a problem (btrfs check prints some warnings with exit status 0).
 */
export function btrfsCheck(image: string): { status: number | null; output: string } {
  const r = spawnSync('btrfs', ['check', '--readonly', image], { encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}\n${r.stderr}` };
}

export function checkProblems(output: string): string[] {
  // an invalidated v1 space cache is a note, not a problem (check verifies no entry; the kernel rebuilds it)
  const notes = /no error found|^cache and super generation don't match, space cache will be invalidated$/;
  return output.split('\n').filter((l) => /warn|error|wrong|mismatch|missing|corrupt|invalid|unresolved|fail/i.test(l) && !notes.test(l));
}

export function mount(image: string, opts = 'rw'): { dir: string; umount: () => void } {
  const dir = tmpDir('btrfs-ts-mnt-');
  execFileSync('mount', ['-o', `loop,${opts}`, image, dir]);
  let mounted = true;
  return {
    dir,
    umount: () => {
      if (mounted) execFileSync('umount', [dir]);
      mounted = false;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A new image of `size` from mkfs.btrfs, with `script` (sh) run by the kernel in its mount, unmounted again. */
export function kernelImage(image: string, script: string, size = '512M'): void {
  execFileSync('truncate', ['-s', size, image]);
  execFileSync('mkfs.btrfs', ['-q', image]);
  const m = mount(image);
  try {
    execFileSync('sh', ['-c', script], { cwd: m.dir, stdio: ['ignore', 'ignore', 'inherit'] });
  } finally {
    m.umount();
  }
}

export async function manifestOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const line of formatManifest(dirTreeSource(dir))) out.push(line);
  return out;
}

export function superGeneration(image: string): bigint {
  const out = execFileSync('btrfs', ['inspect-internal', 'dump-super', image], { encoding: 'utf8' });
  const m = /^generation\s+(\d+)/m.exec(out);
  if (!m) throw new Error('no generation in dump-super');
  return BigInt(m[1]!);
}
