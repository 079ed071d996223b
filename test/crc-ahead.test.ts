import { copyFileSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { StreamError } from '../src/errors.js';
import { CrcAhead } from '../src/io/crc-ahead.js';
import { canMapFiles } from '../src/io/mapped-input.js';
import { FileWindowInput } from '../src/io/window-input.js';
import { StreamParser } from '../src/stream/parser.js';
import { crc32cEngine } from '../src/util/crc32c.js';
import { nativeAddon } from '../src/util/native-addon.js';

/**
 * The command CRCs of a stream file checked ahead on the addon's thread (io/crc-ahead.ts,
 * native/crc-ahead.c). Oracles: the parser's own framing and check (the thread's count of intact commands
 * is the number of commands before the first one the parser refuses, in the failure corpus, and all of
 * them in good streams, several streams back to back included), and the parser with the thread off: the
 * same commands and the same error, code, byte and command, with it on.
 */
const STREAMS = join(__dirname, '..', 'streams');
const FAILURES = join(__dirname, 'failures');
const expected = JSON.parse(readFileSync(join(FAILURES, 'expected.json'), 'utf8')) as Record<string, { code: string; offset: number; commandIndex?: number }>;
const GOOD = ['sample.stream', 'multi-v1.stream', 'multi-e-v1.stream', 'full-v2.stream', 'zstd-v2.stream', 'incr-v1.stream'];
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-crc-ahead-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
afterEach(() => { delete process.env['BTRFS_TS_CRC_AHEAD']; });

const usable = canMapFiles() && crc32cEngine === 'addon' && typeof nativeAddon?.crcAhead === 'function';
if (!usable) console.log('crc-ahead: the native addon (crcAhead, hardware CRC32C) is not built here: skipped');

/** The thread's count once it has stopped, for the stream file `path` (its first command at byte 17). */
async function threadCount(path: string, maxLen = 16 << 20): Promise<number> {
  const fd = openSync(path, 'r');
  try {
    const a = CrcAhead.start(fd, 17, maxLen)!;
    expect(a).toBeDefined();
    for (let i = 0; i < 2000 && !a.stopped; i++) await new Promise((r) => setTimeout(r, 1));
    expect(a.stopped).toBe(true);
    return a.verified();
  } finally {
    closeSync(fd);
  }
}

/** What a dump's parser (a file window, commands not kept) yields from `path`: its commands and its error. */
async function parse(path: string, opts: { stopAfterFirstEnd?: boolean } = {}): Promise<{ commands: number; offsets: number[]; error?: string }> {
  const fd = openSync(path, 'r');
  const p = new StreamParser(new FileWindowInput(fd, 1 << 20), { reuseInput: true, transientAttrs: true, ...opts });
  const offsets: number[] = [];
  try {
    for (;;) {
      const x = p.nextRaw();
      const item = x instanceof Promise ? await x : x;
      if (item === null) break;
      if (item.kind === 'raw') offsets.push(p.rawEnd);
    }
    return { commands: offsets.length, offsets };
  } catch (e) {
    if (!(e instanceof StreamError)) throw e;
    return { commands: offsets.length, offsets, error: `${e.code} ${String(e.offset)} ${String(e.commandIndex)} ${e.message}` };
  } finally {
    await p.close();
  }
}

describe.skipIf(!usable)('CRC32C checked ahead on the addon thread', () => {
  it('good streams: the thread finds every command intact, through the stream headers of streams back to back', async () => {
    for (const f of GOOD) {
      const all = await parse(join(STREAMS, f));
      expect(all.error, f).toBeUndefined();
      expect(all.commands, f).toBeGreaterThan(2);
      expect(await threadCount(join(STREAMS, f)), f).toBe(all.commands);
    }
    // multi-v1 is two streams: the thread went past the first END
    const first = await parse(join(STREAMS, 'multi-v1.stream'), { stopAfterFirstEnd: true });
    expect(first.commands).toBeLessThan(await threadCount(join(STREAMS, 'multi-v1.stream')));
  });

  it('the failure corpus: the thread stops at the command the parser refuses, and a length over the limit stops it', async () => {
    for (const [f, exp] of Object.entries(expected)) {
      if (exp.commandIndex === undefined || exp.code === 'MISSING_END' || exp.code.startsWith('BAD_ATTRIBUTE') || exp.code.startsWith('ATTR_') || exp.code === 'MISSING_ATTRIBUTE' || exp.code === 'UNKNOWN_COMMAND') continue;
      // a CRC mismatch, a truncated command, a length over 16 MiB: the commands before it are intact
      expect(await threadCount(join(FAILURES, f)), f).toBe(exp.commandIndex);
    }
    // commands whose attributes are bad still have a good CRC: counted, the parser reports them itself
    expect(await threadCount(join(FAILURES, 'UNKNOWN_COMMAND--id-99.stream'))).toBeGreaterThan(expected['UNKNOWN_COMMAND--id-99.stream']!.commandIndex!);
    // with a limit of 0 bytes, it stops at the first command with a payload (every command's is 10 bytes of header and more)
    const sample = join(STREAMS, 'sample.stream');
    const ends = (await parse(sample)).offsets;
    const firstWithPayload = ends.findIndex((end, i) => end - (i === 0 ? 17 : ends[i - 1]!) > 10);
    expect(firstWithPayload).toBeGreaterThanOrEqual(0);
    expect(await threadCount(sample, 0)).toBe(firstWithPayload);
  });

  it('with the thread or without, the parser yields the same commands and the same error', async () => {
    const files = [...GOOD.map((f) => join(STREAMS, f)), ...readdirSync(FAILURES).filter((f) => f.endsWith('.stream')).map((f) => join(FAILURES, f))];
    for (const path of files) {
      process.env['BTRFS_TS_CRC_AHEAD'] = 'off';
      const off = await parse(path);
      delete process.env['BTRFS_TS_CRC_AHEAD'];
      expect(await parse(path), path).toEqual(off);
    }
  });

  it('the parser trusts the thread: a byte changed in the file after the thread checked it goes unnoticed, and is caught without the thread', async () => {
    const src = join(STREAMS, 'zstd-v2.stream');
    const path = join(work, 'changed.stream');
    const last = (await parse(src)).offsets;
    // a byte inside the payload of the second-to-last command (the one before END)
    const at = last[last.length - 2]! - 1;
    for (const thread of [true, false]) {
      copyFileSync(src, path);
      if (!thread) process.env['BTRFS_TS_CRC_AHEAD'] = 'off';
      const rfd = openSync(path, 'r');
      const p = new StreamParser(new FileWindowInput(rfd, 1 << 20), { reuseInput: true, transientAttrs: true });
      try {
        expect(((await p.nextRaw()) as { kind: string }).kind).toBe('header');
        const ahead = (p as unknown as { ahead: CrcAhead | undefined }).ahead;
        expect(ahead !== undefined).toBe(thread);
        for (let i = 0; ahead && i < 2000 && !ahead.stopped; i++) await new Promise((r) => setTimeout(r, 1));
        const fd = openSync(path, 'r+');
        writeSync(fd, new Uint8Array([readFileSync(path)[at]! ^ 0x40]), 0, 1, at);
        closeSync(fd);
        let error: unknown;
        try {
          for (let x = await p.nextRaw(); x !== null; x = await p.nextRaw());
        } catch (e) {
          error = e;
        }
        if (thread) expect(error).toBeUndefined();
        else expect((error as StreamError).code).toBe('CRC_MISMATCH');
      } finally {
        await p.close();
      }
    }
  });
});
