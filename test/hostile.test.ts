import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skipReason, tmpDir } from './image-write-helpers.js';
import { spawnSync } from 'node:child_process';
import { parseStream } from '../src/stream/parser.js';
import type { SendCommand } from '../src/stream/types.js';
import { encodeCommand, encodeStreamHeader } from '../src/stream/writer.js';
import { BIN, HOSTILE_DIR, STREAMS, checkImage, copyImage, errorLine, imageState, receiveCli, subvolumeNames, withImage } from './hostile/harness.js';

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
const FAIL_AFTER: Record<string, string[]> = { 'BAD_MAGIC--garbage-after-end.stream': ['vol'] };

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
    for (const c of ['PATH_DOTDOT', 'PATH_ABSOLUTE', 'PATH_EMPTY_COMPONENT', 'NAME_TOO_LONG', 'PATH_NUL', 'PATH_NOT_DIR', 'PATH_NOT_FOUND',
      'RENAME_INTO_SELF', 'DIR_NOT_EMPTY', 'LINK_TO_DIR', 'SUBVOLUME_EXISTS', 'MISSING_END', 'CLONE_OUT_OF_RANGE', 'PARENT_NOT_FOUND',
      'FILE_TOO_BIG', 'NOT_A_FILE', 'IMAGE_XATTR_TOO_BIG', 'ENCODED_SHORT', 'ZLIB_CORRUPT']) {
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

  it('a real stream cut anywhere (stream header, command header, attribute, data, between commands) changes nothing', async () => {
    const bytes = readFileSync(join(STREAMS, 'full-v1.stream'));
    const cmds: { offset: number; len: number; cmd: number }[] = [];
    for await (const item of parseStream([new Uint8Array(bytes)])) if (item.kind === 'command') cmds.push({ offset: item.command.meta.offset, len: item.command.meta.len, cmd: item.command.cmd });
    const write = cmds.find((c) => c.cmd === 15 && c.len > 1000)!;
    const cuts: [number, string][] = [
      [5, 'TRUNCATED_HEADER'], [17 + 4, 'TRUNCATED_COMMAND'], [cmds[1]!.offset + 10 + 3, 'TRUNCATED_COMMAND'],
      [write.offset + 10 + 200, 'TRUNCATED_COMMAND'], [cmds[40]!.offset, 'MISSING_END'], [bytes.length - 1, 'TRUNCATED_COMMAND'],
    ];
    const streamFile = join(work, 'cut.stream');
    for (const [at, code] of cuts) {
      writeFileSync(streamFile, bytes.subarray(0, at));
      const image = join(work, `cut-${at}.img`);
      copyImage(base, image);
      const r = receiveCli(image, streamFile);
      expect(r.status, `cut at ${at}`).toBe(1);
      expect(r.stderr, `cut at ${at}`).toMatch(new RegExp(`^btrfs-ts: ERROR: at byte \\d+, .*\\[${code}\\]\\n$`));
      expect(checkImage(image)).toEqual([]);
      expect(await imageState(image)).toEqual(baseState);
      rmSync(image);
    }
  });

  it('compressed data that does not decode passes through by default, as in the kernel; verify and --check-extents catch it', async () => {
    const stream = join(HOSTILE_DIR, 'ZLIB_CORRUPT--encoded-garbage-check-extents.stream');
    const image = join(work, 'passthrough.img');
    copyImage(base, image);
    expect(receiveCli(image, stream).status).toBe(0);
    expect(checkImage(image)).toEqual([]);
    const v = spawnSync('node', [BIN, 'verify', '-f', stream], { encoding: 'utf8' });
    expect(v.status).toBe(1);
    expect(v.stdout).toMatch(/^PROBLEM encoded: at byte 248, command #7, BTRFS_SEND_C_ENCODED_WRITE, path "reg": zlib data does not decode/m);
    rmSync(image);
  });

  it('a crafted stream may clone from any subvolume of the image it is received into (and nothing else)', async () => {
    // the btrfs-receive man page's warning: clone sources are found by UUID; here only in the named image
    const sampleUuid = (await stateBySubvolUuid(base)).get('sample')!;
    const te = new TextEncoder();
    const stream = join(work, 'crafted-clone.stream');
    writeFileSync(stream, Buffer.concat([encodeStreamHeader(1), ...[
      { cmd: 1, path: te.encode('crafted'), uuid: new Uint8Array(16).fill(9), ctransid: 1n },
      { cmd: 3, path: te.encode('stolen'), ino: 257n },
      { cmd: 16, path: te.encode('stolen'), fileOffset: 0n, cloneLen: 40000n, cloneUuid: sampleUuid, cloneCtransid: 1n, clonePath: te.encode('docs/notes.txt'), cloneOffset: 0n },
      { cmd: 21 },
    ].map((c) => encodeCommand(c as SendCommand, 1))]));
    const image = join(work, 'crafted.img');
    copyImage(base, image);
    const r = receiveCli(image, stream);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(checkImage(image)).toEqual([]);
    const [a, b2] = await Promise.all(['sample/docs/notes.txt', 'crafted/stolen'].map((p) => fileBytes(image, p)));
    expect(b2.length).toBe(40000);
    expect(b2.equals(a!)).toBe(true);
    rmSync(image);
  });

  it('an image that cannot even be created (--max-size too small) is not left behind', () => {
    const image = join(work, 'too-small.img');
    // 64M: below the 89 MiB of the first chunks (system and metadata DUP, as mkfs.btrfs sizes them)
    const r = receiveCli(image, join(STREAMS, 'sample.stream'), ['--max-size', '64M']);
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
    expect(r.stderr).toMatch(errorLine({ code: 'EMPTY_INPUT', offset: 0 }));
    expect(existsSync(image)).toBe(false);
  });
});

/** Received UUID of each subvolume, by path. */
function stateBySubvolUuid(image: string): Promise<Map<string, Uint8Array>> {
  return withImage(image, async (img) => new Map((await img.listSubvolumes()).map((s) => [s.path, s.receivedUuid])));
}

function fileBytes(image: string, path: string): Promise<Buffer> {
  return withImage(image, async (img) => {
    const parts: Uint8Array[] = [];
    for await (const p of img.readFile(await img.resolve(path))) parts.push(p);
    return Buffer.concat(parts);
  });
}
