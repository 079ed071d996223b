import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RECEIVE_FLAGS } from '../src/cli/launch.js';
import { skipReason } from './helpers/oracle.js';
import { STREAMS_DIR } from './helpers/streams.js';

/**
 * bin/btrfs-ts.js is run by sh (its first line) and then by node: sh starts node with the V8 flags the
 * CLI needs (the young generation's size, for peak RSS: issue 11), node reads the same file as a module.
 */
const BIN = join(import.meta.dirname, '..', 'bin', 'btrfs-ts.js');
const built = existsSync(join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'));
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-launch-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!built)('the bin file run as a program', () => {
  // a `node` first on PATH that records how it was started (arguments, then NODE_EXTRA_CA_CERTS as it
  // arrives), then runs the real node
  const log = join(work, 'argv.txt');
  const shim = join(work, 'node');
  writeFileSync(shim, `#!/bin/sh\nprintf '%s\\n' "$@" "extra-ca=\${NODE_EXTRA_CA_CERTS-unset}" > '${log}'\nexec '${process.execPath}' "$@"\n`);
  chmodSync(shim, 0o755);
  const env = { ...process.env, PATH: `${work}:${process.env['PATH']}`, NODE_EXTRA_CA_CERTS: join(work, 'no-such-ca.pem') };
  const started = (): string[] => readFileSync(log, 'utf8').trim().split('\n');

  it('starts node with the arguments as given, no V8 flag for a dump, no NODE_EXTRA_CA_CERTS', () => {
    const r = spawnSync(BIN, ['dump', '-f', join(STREAMS_DIR, 'sample.stream')], { encoding: 'utf8', env });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(readFileSync(join(STREAMS_DIR, 'sample.dump'), 'utf8'));
    // a V8 flag would make node compile its own JavaScript instead of taking its code cache
    expect(started()).toEqual([BIN, 'dump', '-f', join(STREAMS_DIR, 'sample.stream'), 'extra-ca=unset']);
  });

  it('starts receive and replay with RECEIVE_FLAGS (those their code cache is made under)', () => {
    const img = join(work, 'launch.img');
    const r = spawnSync(BIN, ['receive', '-q', '-f', join(STREAMS_DIR, 'sample.stream'), img], { encoding: 'utf8', env });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(started()).toEqual([...RECEIVE_FLAGS, BIN, 'receive', '-q', '-f', join(STREAMS_DIR, 'sample.stream'), img, 'extra-ca=unset']);
    const h = spawnSync(BIN, ['replay', '--help'], { encoding: 'utf8', env });
    expect(h.status).toBe(0);
    expect(started()).toEqual([...RECEIVE_FLAGS, BIN, 'replay', '--help', 'extra-ca=unset']);
  });

  it('an argument with spaces and quotes arrives whole', () => {
    const odd = join(work, `a "b" c's.stream`);
    writeFileSync(odd, readFileSync(join(STREAMS_DIR, 'sample.stream')));
    const r = spawnSync(BIN, ['dump', '-f', odd], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(readFileSync(join(STREAMS_DIR, 'sample.dump'), 'utf8'));
  });
});

describe.skipIf(built)('the bin file run as a program', () => {
  it('needs a build', () => skipReason('cli-launch', 'run `npx tsc -p .` first (bin/btrfs-ts.js needs dist/)'));
});
