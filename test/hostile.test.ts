import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipReason, tmpDir } from './image-write-helpers.js';
import { HOSTILE_DIR, STREAMS, checkImage, copyImage, errorLine, imageState, receiveCli, subvolumeNames } from './hostile/harness.js';

/**
 * The receive-level failure corpus (test/hostile/, made by generate.mjs) and the stream-level one
 * (test/failures/), each received by the CLI into an image that already holds a subvolume: every stream
 * must be refused with exit status 1 and one error line naming the byte offset, the command and the path;
 * afterwards the image passes `btrfs check` and holds exactly what it held before (superblocks, subvolume
 * list, every subvolume's manifest) — or, for `btrfs send -e` style streams, that plus the subvolumes
 * finished before the failure. No lock file is left behind.
 */
interface Expect {
  code: string;
  options: string[];
  after: 'unchanged' | string[];
  offset?: number;
  commandIndex?: number;
  command?: string;
  path?: string;
}

const why = skipReason('progs');
if (why) console.warn(`SKIP hostile receive corpus (btrfs check is the oracle): ${why}`);

const expected = JSON.parse(readFileSync(join(HOSTILE_DIR, 'expected.json'), 'utf8')) as Record<string, Expect>;
const files = readdirSync(HOSTILE_DIR).filter((f) => f.endsWith('.stream')).sort();
const FAIL_DIR = join(HOSTILE_DIR, '..', 'failures');
const failExpected = JSON.parse(readFileSync(join(FAIL_DIR, 'expected.json'), 'utf8')) as Record<string, { code: string; offset: number; commandIndex?: number }>;
/** Stream-level corpus files that carry a complete subvolume before the broken part. */
const FAIL_AFTER: Record<string, string[]> = { 'bad-magic--garbage-after-end.stream': ['vol'] };

const work = tmpDir('btrfs-ts-hostile-');
const base = join(work, 'base.img');
let baseState: string[] = [];
let baseSubvols: string[] = [];
let caseNo = 0;
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!!why)('hostile streams are refused and leave the image as it was', () => {
  beforeAll(async () => {
    const r = receiveCli(base, join(STREAMS, 'sample.stream'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(checkImage(base)).toEqual([]);
    baseState = await imageState(base);
    baseSubvols = await subvolumeNames(base);
  });

  it('the corpus and expected.json agree, and cover every case class of the issue', () => {
    expect(Object.keys(expected).sort()).toEqual(files);
    const codes = new Set(Object.values(expected).map((e) => e.code));
    for (const c of ['path-dotdot', 'path-absolute', 'path-empty-component', 'name-too-long', 'path-nul', 'path-not-dir', 'path-not-found',
      'rename-into-self', 'dir-not-empty', 'link-to-dir', 'subvolume-exists', 'missing-end', 'clone-out-of-range', 'parent-not-found',
      'file-too-big', 'not-a-file', 'IMAGE_XATTR_TOO_BIG', 'encoded-short', 'ZLIB_CORRUPT']) {
      expect(codes, c).toContain(c);
    }
  });

  async function expectRefused(name: string, stream: string, exp: Expect): Promise<void> {
    const image = join(work, `case-${++caseNo}.img`);
    copyImage(base, image);
    try {
      const r = receiveCli(image, stream, exp.options);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(errorLine(exp));
      expect(r.stdout).toBe('');
      expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
      expect(checkImage(image)).toEqual([]);
      if (exp.after === 'unchanged') {
        expect(await imageState(image)).toEqual(baseState);
        // a device grown by the failed receive is cut back: nothing committed lies past the old end
        expect(statSync(image).size).toBe(statSync(base).size);
      } else {
        expect(await subvolumeNames(image)).toEqual([...baseSubvols, ...exp.after].sort());
      }
    } finally {
      rmSync(image, { force: true });
    }
  }

  for (const f of files) {
    it(`receive-level: ${f}`, async () => {
      const exp = expected[f]!;
      expect(f.startsWith(`${exp.code}--`)).toBe(true);
      await expectRefused(f, join(HOSTILE_DIR, f), exp);
    });
  }

  for (const f of Object.keys(failExpected).sort()) {
    it(`stream-level: ${f}`, async () => {
      const e = failExpected[f]!;
      // parse errors name the offset (and the command index when inside a command), not a path
      await expectRefused(f, join(FAIL_DIR, f), {
        code: e.code, offset: e.offset, ...(e.commandIndex !== undefined ? { commandIndex: e.commandIndex } : {}), options: [], after: FAIL_AFTER[f] ?? 'unchanged',
      });
    });
  }

  it('an image that cannot even be created (--max-size too small) is not left behind', () => {
    const image = join(work, 'too-small.img');
    const r = receiveCli(image, join(STREAMS, 'sample.stream'), ['--max-size', '100M']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\[IMAGE_FULL\]\n$/);
    expect(existsSync(image)).toBe(false);
    expect(existsSync(`${image}.btrfs-ts.lock`)).toBe(false);
  });

  it('an empty stdin is refused and leaves no image behind', () => {
    const image = join(work, 'from-empty.img');
    const empty = join(work, 'empty.stream');
    writeFileSync(empty, '');
    const r = receiveCli(image, empty);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(errorLine({ code: 'empty-input', offset: 0 }));
    expect(existsSync(image)).toBe(false);
  });
});
