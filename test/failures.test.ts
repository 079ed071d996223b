import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StreamError } from '../src/errors.js';
import { processStream } from '../src/stream/receiver.js';
import { slicings } from './helpers/craft.js';
import { countingReceiver } from './helpers/null-receiver.js';
import { hasTool, progsDump, skipReason } from './helpers/oracle.js';

const DIR = join(__dirname, 'failures');
const expected = JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')) as Record<string, { code: string; offset: number; commandIndex?: number }>;
const files = readdirSync(DIR).filter((f) => f.endsWith('.stream')).sort();
const BIN = join(__dirname, '..', 'bin', 'btrfs-ts.js');

/**
 * What `dump` does differently from a receive: it stops at the first END like btrfs-progs (so trailing
 * garbage is never read) and reports unknown commands instead of refusing them.
 */
const DUMP_SUCCEEDS = new Set(['BAD_MAGIC--garbage-after-end.stream', 'UNKNOWN_COMMAND--id-99.stream']);
/** btrfs-progs v6.2 reads these without complaint; we refuse them (documented in docs/stream.md). */
const PROGS_ACCEPTS = new Set([...DUMP_SUCCEEDS, 'UNSUPPORTED_VERSION--version-0.stream']);

describe('failure corpus: each file fails with the error its name says', () => {
  it('the corpus and expected.json agree', () => {
    expect(files.length).toBeGreaterThanOrEqual(15);
    expect(Object.keys(expected).sort()).toEqual(files);
  });

  for (const f of files) {
    it(f, async () => {
      const buf = new Uint8Array(readFileSync(join(DIR, f)));
      const exp = expected[f]!;
      expect(f.startsWith(exp.code + '--')).toBe(true);
      for (const [how, chunks] of slicings(buf)) {
        const err = await processStream(chunks, countingReceiver()).then(() => undefined, (e: unknown) => e);
        expect(err, how).toBeInstanceOf(StreamError);
        const se = err as StreamError;
        expect(se.code, how).toBe(exp.code);
        expect(Number(se.offset), how).toBe(exp.offset);
        if (exp.commandIndex !== undefined) expect(se.commandIndex, how).toBe(exp.commandIndex);
        expect(se.describe()).toContain(`at byte ${exp.offset}`);
      }
    });
  }
});

describe('failure corpus through the CLI: `btrfs-ts dump` prints what it parsed, then the error', () => {
  const live = hasTool('btrfs');
  if (!live) skipReason('comparison of failure dumps with btrfs-progs', 'btrfs-progs is not installed');
  for (const f of files) {
    it(f, () => {
      const file = join(DIR, f);
      const r = spawnSync('node', [BIN, 'dump', '-f', file], { env: { ...process.env, TZ: 'UTC' } });
      if (DUMP_SUCCEEDS.has(f)) {
        expect(r.status).toBe(0);
      } else {
        expect(r.status).toBe(1);
        const err = r.stderr.toString();
        expect(err).toMatch(new RegExp(`^btrfs-ts: ERROR: at byte ${expected[f]!.offset}\\b.*\\[${expected[f]!.code}\\]\\n$`));
      }
      if (live) {
        const ref = progsDump(new Uint8Array(readFileSync(file)));
        if (!PROGS_ACCEPTS.has(f)) expect(ref.status).not.toBe(0);
        // the lines before the error are the same as btrfs-progs prints (progs stops early on some of
        // the cases it accepts: then our output starts with its output)
        expect(r.stdout.toString('latin1').startsWith(ref.stdout.toString('latin1'))).toBe(true);
      }
    });
  }
});
