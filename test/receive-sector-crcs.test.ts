import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dataSectorCrcs } from '../src/stream/command-crc.js';
import { parseStream } from '../src/stream/parser.js';
import * as C from '../src/stream/constants.js';
import { oracleRaw } from './helpers/crc-oracle.js';

/**
 * The stream CRC check of WRITE / ENCODED_WRITE runs sector by sector and leaves each 4 KiB piece's raw
 * CRC on the command; the receive turns them into the data checksums instead of a second pass. Oracles:
 * the crc-32 package (an independent CRC32C), the parser's error message on corrupted data, and
 * `btrfs check --check-data-csum`, which reads every data sector of the image and compares its checksum
 * (it fails when one checksum bit is flipped in the derivation: tried by hand).
 */
const REPO = join(import.meta.dirname, '..');
const BIN = join(REPO, 'bin', 'btrfs-ts.js');
const rawCrc = (d: Uint8Array, seed = 0): number => oracleRaw(d, seed);
const dir = mkdtempSync(join(tmpdir(), 'sector-crcs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const stream = (name: string): Uint8Array => new Uint8Array(readFileSync(join(REPO, 'streams', name)));

describe('sector CRCs from the stream CRC check', () => {
  it.each(['full-v1.stream', 'full-v2.stream', 'zstd-v2.stream', 'lzo-v2.stream'])('%s: each whole 4 KiB piece of DATA has its raw CRC', async (name) => {
    let withCrcs = 0;
    for await (const it of parseStream([stream(name)], { sectorCrcs: true })) {
      if (it.kind !== 'command') continue;
      const c = it.command;
      if (c.cmd !== C.BTRFS_SEND_C_WRITE && c.cmd !== C.BTRFS_SEND_C_ENCODED_WRITE) continue;
      const n = Math.floor(c.data.length / 4096);
      if (n === 0) continue;
      const crcs = dataSectorCrcs(c);
      expect(crcs?.length).toBe(n);
      for (let i = 0; i < n; i++) expect(crcs![i]).toBe(rawCrc(c.data.subarray(i * 4096, (i + 1) * 4096)));
      withCrcs++;
    }
    expect(withCrcs).toBeGreaterThan(5);
  });

  it('only the last data command parsed has them: an older one answers undefined (its checksums are then computed)', async () => {
    const kept: Parameters<typeof dataSectorCrcs>[0][] = [];
    for await (const it of parseStream([stream('full-v2.stream')], { sectorCrcs: true })) {
      if (it.kind !== 'command') continue;
      const c = it.command;
      if ((c.cmd === C.BTRFS_SEND_C_WRITE || c.cmd === C.BTRFS_SEND_C_ENCODED_WRITE) && c.data.length >= 4096) {
        expect(dataSectorCrcs(c)).toBeDefined();
        kept.push(c);
      }
    }
    expect(kept.length).toBeGreaterThan(2);
    expect(dataSectorCrcs(kept[0]!)).toBeUndefined();
    expect(dataSectorCrcs(kept.at(-1)!)).toBeDefined();
  });

  it('corrupted data of a big WRITE: the same CRC error as a one-piece CRC gives', async () => {
    const bytes = stream('full-v2.stream');
    let victim: { offset: number; len: number } | undefined;
    for await (const it of parseStream([bytes])) {
      if (it.kind === 'command' && it.command.cmd === C.BTRFS_SEND_C_WRITE && it.command.data.length >= 3 * 4096) {
        victim = { offset: it.command.meta.offset, len: it.command.meta.len };
        break;
      }
    }
    expect(victim).toBeDefined();
    const { offset, len } = victim!;
    bytes[offset + 10 + len - 5000]! ^= 0x10;
    const h = new Uint8Array(bytes.subarray(offset, offset + 10));
    const stored = new DataView(h.buffer).getUint32(6, true);
    h.fill(0, 6, 10);
    const actual = rawCrc(bytes.subarray(offset + 10, offset + 10 + len), rawCrc(h));
    const hex = (n: number): string => n.toString(16).padStart(8, '0');
    await expect((async () => { for await (const _ of parseStream([bytes], { sectorCrcs: true })) { /* drain */ } })()).rejects.toThrow(
      `CRC32C mismatch: header says 0x${hex(stored)}, data gives 0x${hex(actual)}`,
    );
  });

  const hasCheck = spawnSync('btrfs', ['--version']).status === 0;
  if (!hasCheck) console.warn('receive-sector-crcs: btrfs-progs missing, skipping the --check-data-csum receives');
  it.skipIf(!hasCheck).each([['full-v1.stream'], ['full-v2.stream'], ['zstd-v2.stream'], ['lzo-v2.stream'], ['full-v1.stream', 'incr-v1.stream', 'clone-src-v1.stream', 'clones-v1.stream'], ['zstd-v2.stream', 'incr-zstd-v2.stream']])(
    'receive %s: btrfs check --check-data-csum accepts every data checksum', (...names: string[]) => {
      const img = join(dir, `${names.join('+')}.img`);
      for (const n of names) {
        const r = spawnSync('node', [BIN, 'receive', '-q', '-f', join(REPO, 'streams', n), img], { encoding: 'utf8' });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
      }
      const chk = spawnSync('btrfs', ['check', '--check-data-csum', img], { encoding: 'utf8' });
      expect(chk.stdout + chk.stderr).not.toMatch(/mismatch|error\(s\) found/);
      expect(chk.status).toBe(0);
      rmSync(img, { force: true });
    });
});
