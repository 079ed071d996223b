// Oracle: real `btrfs send --compressed-data` streams (streams/*-v2.stream) and the manifests of what the
// kernel's own `btrfs receive` made from them. Every ENCODED_WRITE goes through checkEncodedExtent;
// rebuilding each file from write/encoded_write/clone/truncate must give the manifest's SHA-256.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkEncodedExtent, initCodecs } from '../src/compress/index.js';
import * as C from '../src/stream/constants.js';
import { parseStream } from '../src/stream/parser.js';

const STREAMS = join(__dirname, '../streams');
const names = ['zlib-v2', 'lzo-v2', 'zstd-v2', 'sample'].filter((n) => existsSync(join(STREAMS, `${n}.stream`)));
if (names.length < 4) console.warn(`compress-streams: only found ${names.join(', ')} under streams/`);

const str = (b: Uint8Array) => Buffer.from(b).toString('latin1');

class FileImage {
  buf = new Uint8Array(0);
  size = 0;
  write(off: number, data: Uint8Array): void {
    const end = off + data.length;
    if (end > this.buf.length) {
      const nb = new Uint8Array(Math.max(end, this.buf.length * 2));
      nb.set(this.buf);
      this.buf = nb;
    }
    this.buf.set(data, off);
    this.size = Math.max(this.size, end);
  }
  truncate(size: number): void {
    if (size < this.size) this.buf.fill(0, size, this.size);
    if (size > this.buf.length) this.write(size, new Uint8Array(0));
    this.size = size;
  }
  content(): Uint8Array {
    return this.buf.subarray(0, this.size);
  }
}

beforeAll(() => initCodecs());

describe.skipIf(names.length === 0)('ENCODED_WRITE in kernel send streams', () => {
  for (const name of names) {
    it(`${name}: every encoded write decodes, passes the kernel checks, and files match the manifest`, async () => {
      const files = new Map<string, FileImage>();
      let encoded = 0;
      const codes = new Set<number>();
      for await (const item of parseStream([new Uint8Array(readFileSync(join(STREAMS, `${name}.stream`)))])) {
        if (item.kind !== 'command') continue;
        const c = item.command;
        switch (c.cmd) {
          case C.BTRFS_SEND_C_MKFILE:
            files.set(str((c as { path: Uint8Array }).path), new FileImage());
            break;
          case C.BTRFS_SEND_C_RENAME: {
            const r = c as { path: Uint8Array; pathTo: Uint8Array };
            const from = str(r.path);
            const to = str(r.pathTo);
            for (const [k, v] of [...files]) {
              if (k === from || k.startsWith(from + '/')) {
                files.delete(k);
                files.set(to + k.slice(from.length), v);
              }
            }
            break;
          }
          case C.BTRFS_SEND_C_WRITE: {
            const w = c as { path: Uint8Array; fileOffset: bigint; data: Uint8Array };
            files.get(str(w.path))!.write(Number(w.fileOffset), w.data);
            break;
          }
          case C.BTRFS_SEND_C_ENCODED_WRITE: {
            const e = c as unknown as {
              path: Uint8Array; fileOffset: bigint; unencodedFileLen: bigint; unencodedLen: bigint;
              unencodedOffset: bigint; compression?: number; encryption?: number; data: Uint8Array;
            };
            const chk = checkEncodedExtent({
              compression: e.compression ?? 0, encryption: e.encryption ?? 0, data: e.data,
              unencodedFileLen: Number(e.unencodedFileLen), unencodedLen: Number(e.unencodedLen),
              unencodedOffset: Number(e.unencodedOffset), sectorsize: 4096,
            });
            // Written by the kernel for a 4K-sector fs: nothing may stand in the way of pass-through.
            expect(chk.passThroughProblems).toEqual([]);
            codes.add(e.compression ?? 0);
            const uoff = Number(e.unencodedOffset);
            files.get(str(e.path))!.write(Number(e.fileOffset), chk.decoded.subarray(uoff, uoff + Number(e.unencodedFileLen)));
            encoded++;
            break;
          }
          case C.BTRFS_SEND_C_CLONE: {
            const k = c as { path: Uint8Array; fileOffset: bigint; cloneLen: bigint; clonePath: Uint8Array; cloneOffset: bigint };
            const src = files.get(str(k.clonePath))!;
            const off = Number(k.cloneOffset);
            files.get(str(k.path))!.write(Number(k.fileOffset), src.content().slice(off, off + Number(k.cloneLen)));
            break;
          }
          case C.BTRFS_SEND_C_TRUNCATE: {
            const t = c as { path: Uint8Array; size: bigint };
            files.get(str(t.path))!.truncate(Number(t.size));
            break;
          }
        }
      }
      expect(encoded).toBeGreaterThan(0);
      const manifest = readFileSync(join(STREAMS, `${name}.manifest`), 'utf8').split('\n');
      let checked = 0;
      for (const line of manifest) {
        const m = /^(\S+) file .* size=(\d+) .*sha256=([0-9a-f]{64})/.exec(line);
        if (!m) continue;
        const f = files.get(m[1]!);
        expect(f, m[1]).toBeDefined();
        const content = f!.content();
        expect(content.length, m[1]).toBe(Number(m[2]));
        expect(createHash('sha256').update(content).digest('hex'), `${name}: ${m[1]}`).toBe(m[3]);
        checked++;
      }
      expect(checked).toBeGreaterThan(2);
      if (name.startsWith('lzo')) expect([...codes]).toEqual([3]);
    });
  }
});
