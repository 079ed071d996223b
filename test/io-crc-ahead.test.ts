import { readdirSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StreamError } from '../src/errors.js';
import { FileWindowInput } from '../src/io/window-input.js';
import { crc32cEngine } from '../src/util/crc32c.js';
import { parseStream } from '../src/stream/parser.js';
import { processStream } from '../src/stream/receiver.js';
import { countingReceiver } from './helpers/null-receiver.js';
import { STREAMS } from './hostile/harness.js';

/**
 * Streams read through a file window, with the CRC checked on a second thread (io/crc-ahead.ts: used for
 * files of 32 MiB and more; here any file is declared that large) and on the parsing thread: the same
 * commands, and the failure corpus fails with the same code at the same byte either way.
 */
const FAILURES = join(__dirname, 'failures');
const expected = JSON.parse(readFileSync(join(FAILURES, 'expected.json'), 'utf8')) as Record<string, { code: string; offset: number; commandIndex?: number }>;
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-crc-ahead-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ahead = async (file: string) => new FileWindowInput(await open(file, 'r'), 1 << 20, undefined, 1 << 30);
const inline = async (file: string) => new FileWindowInput(await open(file, 'r'), 1 << 20, undefined, 0);

if (crc32cEngine !== 'native') console.warn('SKIP CRC checked ahead: no native CRC32C here (the parser checks inline; covered by the window tests)');

describe.skipIf(crc32cEngine !== 'native')('CRC checked ahead on a second thread', () => {
  for (const name of ['full-v1', 'full-v2', 'zstd-v2', 'multi-v1', 'clones-v1']) {
    it(`${name}: the same commands as parsed inline`, async () => {
      const file = join(STREAMS, `${name}.stream`);
      const show = (x: unknown) => JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v));
      const a: string[] = [];
      const b: string[] = [];
      for await (const item of parseStream(await inline(file), { reuseInput: true })) a.push(show(item));
      for await (const item of parseStream(await ahead(file), { reuseInput: true })) b.push(show(item));
      expect(b.length).toBeGreaterThan(3);
      expect(b).toEqual(a);
    });
  }

  for (const f of readdirSync(FAILURES).filter((x) => x.endsWith('.stream')).sort()) {
    it(`failure corpus ${f}: the code and byte its name and expected.json say`, async () => {
      const exp = expected[f]!;
      for (const open of [ahead, inline]) {
        const err = await processStream(await open(join(FAILURES, f)), countingReceiver(), { reuseInput: true }).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(StreamError);
        expect((err as StreamError).code).toBe(exp.code);
        expect(Number((err as StreamError).offset)).toBe(exp.offset);
      }
    });
  }

  it('a bad CRC far into a stream of 3000 commands: reported at its command, every command before it applied', async () => {
    // full-v1's commands repeated: the worker is well ahead of the parser when it meets the bad one
    const src = readFileSync(join(STREAMS, 'full-v1.stream'));
    const parts: Buffer[] = [];
    let commands = 0;
    while (commands < 3000) {
      parts.push(src);
      commands += (await processStream([new Uint8Array(src)], countingReceiver())).commands;
    }
    const whole = Buffer.concat(parts);
    // flip a payload byte of the 2001st command (offsets from the plain parse)
    const offsets: number[] = [];
    await processStream([new Uint8Array(whole)], { ...countingReceiver() }, {
      afterCommand: (r) => void offsets.push(r.bytes),
    });
    const victim = offsets[1999]!; // the 2001st command starts where the 2000th ends
    whole[victim + 12] = whole[victim + 12]! ^ 0x40;
    const file = join(work, 'bad-crc.stream');
    writeFileSync(file, whole);
    let applied = 0;
    const err = await processStream(await ahead(file), countingReceiver(), {
      reuseInput: true, afterCommand: () => void applied++,
    }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(StreamError);
    expect((err as StreamError).code).toBe('CRC_MISMATCH');
    expect(Number((err as StreamError).offset)).toBe(victim);
    expect(applied).toBe(2000);
  });
});

describe('CRC checked ahead: a worker that fails', () => {
  it('is a read error at the next fill, not a hang', async () => {
    const { CrcAheadReader } = await import('../src/io/crc-ahead.js');
    const fh = await open(join(STREAMS, 'full-v1.stream'), 'r');
    // a module path that does not load: the worker throws before reading anything
    const r = new CrcAheadReader(fh, join(work, 'no-such-module.js'), 1 << 20);
    await expect(r.fill(17)).rejects.toThrow(/CRC check thread failed/);
    await r.close();
  });
});
