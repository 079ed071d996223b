import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { btrfsCheck, checkProblems, manifestOf, skipReason } from './image-write-helpers.js';
import { skipReason as announceSkip } from './helpers/oracle.js';
import { STREAMS_DIR, storedManifest } from './helpers/streams.js';

/**
 * The README's recipes and library example, run as written: the shell blocks of "### Recipes" (with
 * `npx btrfs-ts` meaning this checkout's CLI) and the TypeScript block of "### Library".
 */
const ROOT = join(import.meta.dirname, '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-recipes-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function section(title: string): string {
  const start = README.indexOf(`### ${title}\n`);
  expect(start, `README has "### ${title}"`).toBeGreaterThanOrEqual(0);
  const end = README.indexOf('\n### ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}
const blocks = (text: string, lang: string) => [...text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);

/** A directory where `btrfs-ts` is this checkout's CLI and streams/ the shipped streams. */
function sandbox(name: string): { dir: string; env: NodeJS.ProcessEnv } {
  const dir = join(work, name);
  mkdirSync(join(dir, '.bin'), { recursive: true });
  symlinkSync(STREAMS_DIR, join(dir, 'streams'));
  const shim = join(dir, '.bin', 'btrfs-ts');
  writeFileSync(shim, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, 'bin', 'btrfs-ts.js'))} "$@"\n`);
  chmodSync(shim, 0o755);
  return { dir, env: { ...process.env, PATH: `${join(dir, '.bin')}:${process.env.PATH}` } };
}

function run(block: string, name: string): { dir: string; status: number | null; stdout: string; stderr: string } {
  const { dir, env } = sandbox(name);
  const script = block.replace(/\bnpx btrfs-ts\b/g, 'btrfs-ts');
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { cwd: dir, env, encoding: 'utf8', timeout: 300_000 });
  return { dir, status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const recipes = blocks(section('Recipes'), 'sh');
const progs = skipReason('progs');
if (progs) announceSkip('readme-recipes btrfs check of the OS image', progs);

describe('README recipes, as written', () => {
  it('there are the three: a backup chain, an OS image, CI replay', () => {
    expect(recipes).toHaveLength(3);
    expect(recipes[0]).toMatch(/receive .*incr/);
    expect(recipes[1]).toMatch(/mkfs -r rootfs/);
    expect(recipes[2]).toMatch(/replay .*--expect/);
  });

  it('restore a chain of daily backups: the extracted day 2 is the tree the kernel sent', async () => {
    const r = run(recipes[0]!, 'chain');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/incr/);
    // as root the owners come back too, so the whole manifest matches (a user gets the same minus owners)
    const restored = await manifestOf(join(r.dir, 'restored'));
    if (process.getuid?.() === 0) expect(restored).toEqual(storedManifest('incr-v1.manifest'));
    else expect(restored.length).toBe(storedManifest('incr-v1.manifest').length);
  });

  it('build an OS image: check-clean, the file reads back, and the same tree gives the same bytes', () => {
    const a = run(recipes[1]!, 'os-a');
    expect(a.status, a.stderr).toBe(0);
    expect(a.stdout).toContain('demo');
    const b = run(recipes[1]!, 'os-b');
    expect(b.status, b.stderr).toBe(0);
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    expect(sha(join(a.dir, 'os.img'))).toBe(sha(join(b.dir, 'os.img')));
    if (!progs) {
      for (const img of ['os.img', 'snapshot-os.img']) {
        const c = btrfsCheck(join(a.dir, img));
        expect(c.status, c.output).toBe(0);
        expect(checkProblems(c.output)).toEqual([]);
      }
    }
  });

  it('CI replay: exit 0 when the manifest matches, 1 with a diff when it does not', () => {
    const ok = run(recipes[2]!, 'replay');
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    const bad = run(recipes[2]!.replace('incr-v1.manifest', 'full-v1.manifest'), 'replay-bad');
    expect(bad.status).toBe(1);
    expect(bad.stdout + bad.stderr).toMatch(/^[-+]/m);
  });
});

describe('README library example, as written', () => {
  it('runs: receive into an image file, read it by path, send image to image, the lower level', async () => {
    const [code] = blocks(section('Library'), 'ts');
    const dir = mkdtempSync(join(work, 'lib-'));
    // the example's relative paths, here; 'btrfs-ts' is this checkout's entry point
    const src = code!
      .replace(/from 'btrfs-ts'/, `from ${JSON.stringify(join(ROOT, 'src', 'index.ts'))}`)
      .replace(/'streams\//g, `'${STREAMS_DIR}/`)
      .replace(/'([\w-]+\.img)'/g, (_m, f: string) => `'${join(dir, f)}'`);
    const file = join(dir, 'example.ts');
    writeFileSync(file, `${src}\nexport const done = true;\n`);
    const logged: unknown[][] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => { logged.push(a); };
    try {
      const m = (await import(file)) as { done: boolean };
      expect(m.done).toBe(true);
    } finally {
      console.log = log;
    }
    // the walk printed every entry of the sample subvolume, the read printed the file's text
    const sample = storedManifest('sample.manifest').filter((l) => l !== '');
    expect(logged.length).toBe(sample.length + 1);
    const notes = sample.find((l) => l.startsWith('docs/notes.txt '))!;
    expect(createHash('sha256').update(String(logged.at(-1)![1])).digest('hex')).toBe(/sha256=(\w+)/.exec(notes)![1]);
  });
});
