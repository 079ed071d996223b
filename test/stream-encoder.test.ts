import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseStream } from '../src/stream/parser.js';
import * as C from '../src/stream/constants.js';
import type { EncodedWriteCmd } from '../src/stream/types.js';
import { encodeCommand, StreamEncoder } from '../src/stream/writer.js';
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

  it('dataRoom: data read where the encoder puts it gives the same bytes, across buffer ends and when the command grows after', () => {
    const cmd = (n: number, data: Uint8Array): EncodedWriteCmd => ({
      cmd: C.BTRFS_SEND_C_ENCODED_WRITE, path: new TextEncoder().encode(`dir/file${n}`), fileOffset: BigInt(n) * 4096n,
      unencodedFileLen: 131072n, unencodedLen: 131072n, unencodedOffset: 0n, compression: 1, data,
    });
    const payload = (n: number, len: number): Uint8Array => Uint8Array.from({ length: len }, (_, i) => (i * 31 + n) & 255);
    for (const version of [1, 2]) {
      const enc = new StreamEncoder(version, 5000);
      const want: Uint8Array[] = [];
      for (let n = 0; n < 40; n++) {
        const len = 100 + ((n * 977) % 4000);
        const c = cmd(n, new Uint8Array(0));
        // the kernel's order: every attribute but one set before the room is taken
        c.encryption = 0;
        const grows = n % 5 === 4;
        if (grows) delete c.encryption;
        const room = enc.dataRoom(c, len)!;
        expect(room.length).toBe(len);
        room.set(payload(n, len));
        c.data = room;
        if (grows) c.encryption = 0;
        enc.add(c);
        want.push(encodeCommand({ ...cmd(n, payload(n, len)), encryption: 0 }, version));
      }
      const got = Buffer.concat(enc.end());
      expect(got.equals(Buffer.concat(want))).toBe(true);
    }
  });
});
