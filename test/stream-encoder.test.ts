import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseStream } from '../src/stream/parser.js';
import { StreamEncoder } from '../src/stream/writer.js';
import { collect, STREAMS_DIR } from './helpers/streams.js';

/**
 * StreamEncoder (the send path's encoder: commands straight into large buffers) must give the kernel's
 * bytes: a captured kernel stream, parsed and re-encoded through it with buffers far smaller than some
 * commands, comes out identical — and no buffer already handed out changes afterwards (write-behind
 * consumers keep them).
 */
describe('StreamEncoder', () => {
  for (const [file, chunk] of [['full-v1.stream', 300], ['zstd-v2.stream', 4096], ['full-v2.stream', 1 << 20]] as const) {
    it(`re-encodes ${file} byte for byte (buffers of ${chunk} bytes)`, async () => {
      const buf = new Uint8Array(readFileSync(join(STREAMS_DIR, file)));
      const items = await collect(parseStream([buf]));
      const out: Uint8Array[] = [];
      const copies: Uint8Array[] = [];
      let enc: StreamEncoder | undefined;
      for (const it of items) {
        if (it.kind === 'header') {
          enc ??= new StreamEncoder(it.version, chunk);
          enc.header();
          continue;
        }
        // the parser's attribute order is dropped: the encoder's own (the kernel's) order must match
        enc!.add({ ...it.command, meta: { ...it.command.meta, attrOrder: [] } });
        for (const b of enc!.take()) {
          out.push(b);
          copies.push(b.slice());
        }
      }
      for (const b of enc!.end()) {
        out.push(b);
        copies.push(b.slice());
      }
      expect(out.length).toBeGreaterThan(chunk < 4096 ? 100 : 0);
      expect(out.every((b, i) => Buffer.compare(b, copies[i]!) === 0)).toBe(true);
      expect(Buffer.compare(Buffer.concat(out), buf)).toBe(0);
    });
  }
});
