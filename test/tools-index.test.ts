import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { collect, STREAMS_DIR } from './helpers/streams.js';

/** The library entry exposes the stream tools and they compose: convert → verify → dump. */
describe('library entry (src/index.ts)', () => {
  it('exports the public API', () => {
    for (const name of ['parseStream', 'processStream', 'dumpStream', 'planEncodedWrite', 'PlanReceiver', 'verifyStream',
      'convertStream', 'extractStreams', 'encodeCommand', 'writeStream', 'initCodecs', 'BtrfsTsError', 'formatManifest']) {
      expect(typeof (lib as Record<string, unknown>)[name], name).toBe('function');
    }
    expect(lib.sendConstants.BTRFS_SEND_C_ENCODED_WRITE).toBe(25);
  });

  it('a converted stream verifies and dumps with the same commands apart from the data layout', async () => {
    const input = new Uint8Array(readFileSync(join(STREAMS_DIR, 'sample.stream')));
    const v1 = await collect(lib.convertStream([input], { proto: 1 }));
    const report = await lib.verifyStream(v1);
    expect(report.ok).toBe(true);
    expect(report.subvolumes[0]!.version).toBe(1);
    expect(report.subvolumes[0]!.commands.ENCODED_WRITE).toBeUndefined();
    const orig = await lib.verifyStream([input]);
    const file = (r: lib.VerifyReport) => r.subvolumes[0]!.data.write + r.subvolumes[0]!.data.encodedFile;
    expect(file(report)).toBe(file(orig));
    const lines: string[] = [];
    await lib.dumpStream(v1, (l) => lines.push(l));
    expect(lines[0]).toMatch(/^subvol +\.\/sample /);
  });
});
