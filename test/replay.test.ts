import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { replay } from '../src/replay/index.js';
import { STREAMS_DIR } from './helpers/streams.js';

const BIN = join(__dirname, '..', 'bin', 'btrfs-ts.js');
const S = (n: string) => join(STREAMS_DIR, n);

describe('replay: receive into a scratch image and compare with a stored manifest (no kernel needed)', () => {
  it('a full + incremental chain matches the kernel-received manifest', async () => {
    const r = await replay({ streams: [S('full-v1.stream'), S('incr-v1.stream')], expect: S('incr-v1.manifest') });
    expect(r.subvolumes.map((v) => v.name)).toEqual(['full', 'incr']);
    expect(r.compared).toBe('incr');
    expect(r.diffs).toEqual([]);
    expect(r.entries).toBeGreaterThan(50);
  });

  it('compressed streams match too (pass-through extents read back through the codecs)', async () => {
    for (const n of ['zstd-v2', 'lzo-v2', 'zlib-v2']) {
      const r = await replay({ streams: [S(`${n}.stream`)], expect: S(`${n}.manifest`) });
      expect(r.diffs, n).toEqual([]);
    }
  });

  it('a different tree is reported path by path, and the CLI exits 1', async () => {
    const r = await replay({ streams: [S('full-v1.stream')], expect: S('incr-v1.manifest') });
    expect(r.diffs.length).toBeGreaterThan(0);
    expect(r.report).toMatch(/^--- .*incr-v1\.manifest\n\+\+\+ replay:full\n/);
    const cli = spawnSync('node', [BIN, 'replay', '-f', S('full-v1.stream'), '--expect', S('incr-v1.manifest')], { encoding: 'utf8' });
    expect(cli.status).toBe(1);
    expect(cli.stdout).toContain('+++ replay:full');
    const ok = spawnSync('node', [BIN, 'replay', '-f', S('sample.stream'), '--expect', S('sample.manifest')], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/sample matches .*sample\.manifest/);
  });
});
