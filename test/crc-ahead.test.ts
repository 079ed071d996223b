import { copyFileSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { StreamError } from '../src/errors.js';
import { CrcAhead } from '../src/io/crc-ahead.js';
import { canMapFiles } from '../src/io/mapped-input.js';
import { FileWindowInput } from '../src/io/window-input.js';
import { dataSectorCrcs, StreamParser } from '../src/stream/parser.js';
import type { EncodedWriteCmd, WriteCmd } from '../src/stream/types.js';
import { BTRFS_SEND_C_ENCODED_WRITE, BTRFS_SEND_C_WRITE } from '../src/stream/constants.js';
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
    const a = CrcAhead.start(fd, 17, maxLen, readFileSync(path).readUInt32LE(13), false)!;
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
  const fh = await open(path, 'r');
  const p = new StreamParser(new FileWindowInput(fh, 1 << 20), { reuseInput: true, transientAttrs: true, ...opts });
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
      const fh = await open(path, 'r');
      const p = new StreamParser(new FileWindowInput(fh, 1 << 20), { reuseInput: true, transientAttrs: true });
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

  it('for a receive, the sector CRCs of WRITE and ENCODED_WRITE data come from the thread, equal to the parser\'s own', async () => {
    // protocol 1 WRITEs of 48 KiB, protocol 2 ENCODED_WRITEs and WRITEs, and several streams back to back
    for (const f of ['full-v1.stream', 'zstd-v2.stream', 'full-v2.stream', 'incr-v1.stream']) {
      const runs: (number[] | undefined)[][] = [];
      let fromThread = 0;
      for (const thread of [false, true]) {
        if (!thread) process.env['BTRFS_TS_CRC_AHEAD'] = 'off';
        else delete process.env['BTRFS_TS_CRC_AHEAD'];
        const fh = await open(join(STREAMS, f), 'r');
        const p = new StreamParser(new FileWindowInput(fh, 1 << 20), { reuseInput: true, sectorCrcs: true });
        const got: (number[] | undefined)[] = [];
        try {
          const first = await p.next();
          expect(first?.kind).toBe('header');
          const ahead = (p as unknown as { ahead: CrcAhead | undefined }).ahead;
          expect(ahead !== undefined, f).toBe(thread);
          // the thread first checks everything (so that every command below is one it found intact)
          for (let i = 0; ahead && i < 2000 && !ahead.stopped; i++) await new Promise((r) => setTimeout(r, 1));
          for (let x = await p.next(); x !== null; x = await p.next()) {
            if (x.kind !== 'command' || (x.command.cmd !== BTRFS_SEND_C_WRITE && x.command.cmd !== BTRFS_SEND_C_ENCODED_WRITE)) continue;
            const sectors = dataSectorCrcs(x.command as WriteCmd | EncodedWriteCmd);
            got.push(sectors && [...sectors]);
          }
          if (ahead) fromThread = (ahead as unknown as { taken: number }).taken;
        } finally {
          await p.close();
        }
        runs.push(got);
      }
      expect(runs[0]!.filter((x) => x !== undefined).length, f).toBeGreaterThan(2);
      expect(runs[1], f).toEqual(runs[0]);
      expect(fromThread, f).toBeGreaterThan(2);
    }
  });

  it('sectorsOf hands a record only to the command it names with DATA where the parser finds it', async () => {
    const fh = await open(join(STREAMS, 'zstd-v2.stream'), 'r');
    const a = CrcAhead.start(fh.fd, 17, 16 << 20, 2, true)!;
    try {
      for (let i = 0; i < 2000 && !a.stopped; i++) await new Promise((r) => setTimeout(r, 1));
      const rec = (a as unknown as { rec: Int32Array }).rec;
      const [k0, off0, len0, n0] = [rec[0]!, rec[1]!, rec[2]!, rec[3]!];
      const [k1, off1, len1] = [rec[4]!, rec[5]!, rec[6]!];
      expect(k1).toBeGreaterThan(k0);
      expect(n0).toBe(Math.floor(len0 / 4096));
      // a command before the first record has none, and takes nothing
      if (k0 > 0) expect(a.sectorsOf(k0 - 1, off0, len0)).toBeUndefined();
      // DATA elsewhere than the record says: none (the record is passed over)
      expect(a.sectorsOf(k0, off0 + 1, len0)).toBeUndefined();
      // the next record, asked for with another length: none either
      expect(a.sectorsOf(k1, off1, len1 + 4096)).toBeUndefined();
      expect((a as unknown as { taken: number }).taken).toBe(2);
      // and the one after it is handed to its own command, asked for by a later one that passes it over
      const [k2, off2, len2, n2] = [rec[8]!, rec[9]!, rec[10]!, rec[11]!];
      expect(a.sectorsOf(k2, off2, len2)?.length).toBe(n2);
    } finally {
      a.stop();
      await fh.close();
    }
  });
});
