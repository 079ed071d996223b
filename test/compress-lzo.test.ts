// Oracle: liblzo2 (Debian python3-lzo) — the reference LZO1X implementation, both directions.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { btrfsLzoCompress, btrfsLzoDecompress, lzo1x1Compress, lzo1xDecompress } from '../src/compress/index.js';
import { CodecError } from '../src/errors.js';

const PY = '/usr/bin/python3';
const lzoAvailable = spawnSync(PY, ['-c', 'import lzo'], { stdio: 'ignore' }).status === 0;
if (!lzoAvailable) console.warn('compress-lzo: skipping liblzo2 interop tests: python3-lzo missing (apt-get install -y python3-lzo)');

/** Deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return s;
  };
}

function makeInputs(): Map<string, Uint8Array> {
  const r = rng(42);
  const m = new Map<string, Uint8Array>();
  const words = ['alpha ', 'beta ', 'gamma ', 'delta\n', 'the ', 'of ', 'btrfs ', 'extent '];
  const text = (n: number) => {
    const out = new Uint8Array(n);
    let p = 0;
    while (p < n) for (const c of Buffer.from(words[r() % words.length]!)) if (p < n) out[p++] = c;
    return out;
  };
  const random = (n: number) => Uint8Array.from({ length: n }, () => r() & 0xff);
  m.set('empty', new Uint8Array(0));
  for (const n of [1, 3, 4, 17, 18, 20, 21, 238, 239, 300]) m.set(`random${n}`, random(n));
  m.set('zeros4k', new Uint8Array(4096));
  m.set('zeros300k', new Uint8Array(300_000)); // long M3/M4 length extensions, several 48K blocks
  m.set('text4k', text(4096));
  m.set('text200k', text(200_000));
  m.set('random64k', random(65536));
  const mixed = new Uint8Array(100_000);
  for (let i = 0; i < mixed.length; i += 1000) mixed.set(i % 3000 === 0 ? random(1000) : text(1000), i);
  m.set('mixed100k', mixed);
  // Far repeats: matches with distances > 16 KiB (M4) and between 2 and 16 KiB (M3).
  const far = new Uint8Array(120_000);
  const chunk = random(700);
  for (let i = 0; i + 700 <= far.length; i += 700) far.set(i % 2100 === 0 ? chunk : random(700), i);
  far.set(random(30_000).subarray(0, 20_000), 50_000);
  far.set(chunk, 90_000);
  m.set('far120k', far);
  return m;
}

const inputs = makeInputs();
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-lzo-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!lzoAvailable)('LZO1X against liblzo2', () => {
  it('liblzo2 decompresses everything lzo1x1Compress produces', () => {
    for (const [name, data] of inputs) {
      writeFileSync(join(work, `${name}.lzo`), lzo1x1Compress(data));
      writeFileSync(join(work, `${name}.raw`), data);
    }
    const script = `
import lzo, sys, os
d = sys.argv[1]
for name in sys.argv[2:]:
    raw = open(os.path.join(d, name + '.raw'), 'rb').read()
    comp = open(os.path.join(d, name + '.lzo'), 'rb').read()
    out = lzo.decompress(comp, False, max(len(raw), 1))
    print(name, 'ok' if out == raw else 'MISMATCH %d' % len(out))
`;
    const res = execFileSync(PY, ['-c', script, work, ...inputs.keys()]).toString().trim().split('\n');
    expect(res).toEqual([...inputs.keys()].map((n) => `${n} ok`));
  });

  it('lzo1xDecompress decodes liblzo2 output of LZO1X-1 and LZO1X-999 (which also uses M1 matches)', () => {
    const script = `
import lzo, sys, os
d = sys.argv[1]
for name in sys.argv[2:]:
    raw = open(os.path.join(d, name + '.raw'), 'rb').read()
    for level in (1, 9):
        open(os.path.join(d, '%s.%d.lib' % (name, level)), 'wb').write(lzo.compress(raw, level, False))
`;
    for (const [name, data] of inputs) writeFileSync(join(work, `${name}.raw`), data);
    execFileSync(PY, ['-c', script, work, ...inputs.keys()]);
    for (const [name, data] of inputs) {
      for (const level of [1, 9]) {
        const comp = new Uint8Array(readFileSync(join(work, `${name}.${level}.lib`)));
        const out = lzo1xDecompress(comp, data.length);
        expect(Buffer.from(out).equals(Buffer.from(data)), `${name} level ${level}`).toBe(true);
        // Without a size hint the output grows as needed.
        expect(lzo1xDecompress(comp).length).toBe(data.length);
      }
    }
  });
});

describe('LZO1X self-consistency', () => {
  it('round-trips every input and refuses an output buffer one byte short', () => {
    for (const [name, data] of inputs) {
      const c = lzo1x1Compress(data);
      expect(Buffer.from(lzo1xDecompress(c, data.length)).equals(Buffer.from(data)), name).toBe(true);
      if (data.length > 0) expect(() => lzo1xDecompress(c, data.length - 1)).toThrow(CodecError);
    }
  });

  it('rejects trailing bytes after the end marker, as liblzo2 does (LZO_E_INPUT_NOT_CONSUMED)', () => {
    const c = lzo1x1Compress(inputs.get('text4k')!);
    const extra = new Uint8Array(c.length + 1);
    extra.set(c);
    expect(() => lzo1xDecompress(extra, 4096)).toThrow(expect.objectContaining({ code: 'LZO_INPUT_NOT_CONSUMED' }));
  });
});

describe('btrfs LZO framing round trip', () => {
  for (const ss of [4096, 8192, 16384, 65536]) {
    it(`sectorsize ${ss}: compress → decompress, framing rules hold`, () => {
      for (const [name, full] of inputs) {
        const data = full.subarray(0, 131072);
        const c = btrfsLzoCompress(data, ss);
        if (c === null) continue;
        const total = c[0]! | (c[1]! << 8) | (c[2]! << 16) | (c[3]! << 24);
        expect(total).toBe(c.length);
        // Kernel's give-up rule: frees at least one sector.
        expect(Math.ceil(c.length / ss) + 1).toBeLessThanOrEqual(Math.ceil(data.length / ss));
        // Padded to the sector as on disk, it must still decode.
        const padded = new Uint8Array(Math.ceil(c.length / ss) * ss);
        padded.set(c);
        const out = btrfsLzoDecompress(padded, data.length + 100, ss);
        expect(Buffer.from(out.subarray(0, data.length)).equals(Buffer.from(data)), name).toBe(true);
        expect(out.subarray(data.length).every((b) => b === 0)).toBe(true);
      }
    });
  }

  it('gives up (null) on incompressible data and on inputs smaller than a sector', () => {
    expect(btrfsLzoCompress(inputs.get('random64k')!, 4096)).toBeNull();
    expect(btrfsLzoCompress(new Uint8Array(4000), 4096)).toBeNull();
    expect(btrfsLzoCompress(new Uint8Array(8192), 4096)).not.toBeNull();
  });
});
