#!/usr/bin/env node
// Regenerates the failure corpus: every file is named <expected error code>--<what is wrong>.stream, and
// expected.json records where the error must be reported. Run after `npm run build`:
//   node test/failures/generate.mjs
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeCommand, encodeStreamHeader } from '../../dist/stream/writer.js';

const dir = dirname(fileURLToPath(import.meta.url));
const te = new TextEncoder();
const b = (s) => te.encode(s);
const cat = (...p) => Buffer.concat(p.map((x) => Buffer.from(x)));
const u32 = (n) => { const x = Buffer.alloc(4); x.writeUInt32LE(n >>> 0); return x; };

const H1 = encodeStreamHeader(1);
const H2 = encodeStreamHeader(2);
const SUBVOL = { cmd: 1, path: b('vol'), uuid: new Uint8Array(16).fill(0xab), ctransid: 5n };
const MKFILE = { cmd: 3, path: b('file'), ino: 257n };
const WRITE = { cmd: 15, path: b('file'), fileOffset: 0n, data: b('hello') };
const END = { cmd: 21 };
const enc = (c, v = 1) => Buffer.from(encodeCommand(c, v));

/** A command with a hand-made payload and a correct CRC, so the error is past the CRC check. */
function raw(cmd, payload) {
  return enc({ cmd, unknown: true, payload: Uint8Array.from(payload) });
}
const tlv = (type, bytes) => cat(Buffer.from([type & 0xff, type >> 8, bytes.length & 0xff, bytes.length >> 8]), bytes);

const good1 = cat(H1, enc(SUBVOL), enc(MKFILE), enc(WRITE), enc(END));
const c0 = H1.length; // offset of the first command
const c1 = c0 + enc(SUBVOL).length;
const c2 = c1 + enc(MKFILE).length;

const cases = [];
function add(code, what, bytes, where) {
  cases.push({ name: `${code}--${what}.stream`, bytes, expect: { code, ...where } });
}

add('EMPTY_INPUT', 'zero-bytes', new Uint8Array(0), { offset: 0 });
add('TRUNCATED_HEADER', 'ten-bytes-of-magic', H1.subarray(0, 10), { offset: 0 });
add('BAD_MAGIC', 'text-file', b('this is not a send stream at all\n'), { offset: 0 });
add('BAD_MAGIC', 'garbage-after-end', cat(good1, b('GARBAGE-GARBAGE-GARBAGE')), { offset: good1.length });
add('UNSUPPORTED_VERSION', 'version-4', cat(b('btrfs-stream\0'), u32(4), enc(END)), { offset: 0 });
add('UNSUPPORTED_VERSION', 'version-0', cat(b('btrfs-stream\0'), u32(0), enc(END)), { offset: 0 });
add('TRUNCATED_COMMAND', 'cut-inside-command-header', good1.subarray(0, c1 + 6), { offset: c1, commandIndex: 1 });
add('TRUNCATED_COMMAND', 'cut-inside-payload', good1.subarray(0, c2 + 20), { offset: c2, commandIndex: 2 });
add('MISSING_END', 'eof-after-last-command', good1.subarray(0, good1.length - enc(END).length), { offset: good1.length - enc(END).length, commandIndex: 3 });
{
  const bad = Buffer.from(good1);
  bad[c2 + 12] ^= 0x01; // inside WRITE's first TLV
  add('CRC_MISMATCH', 'flipped-payload-bit', bad, { offset: c2, commandIndex: 2 });
  const bad2 = Buffer.from(good1);
  bad2[c1 + 4] = 4; // MKFILE becomes MKDIR: the header is covered by the CRC too
  add('CRC_MISMATCH', 'changed-command-id', bad2, { offset: c1, commandIndex: 1 });
}
add('COMMAND_TOO_LONG', 'length-4GiB', cat(H1, enc(SUBVOL), Buffer.from([0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 0])), { offset: c1, commandIndex: 1 });
add('ATTR_OVERRUN', 'tlv-length-past-command', cat(H1, raw(3, cat(tlv(15, b('file')), Buffer.from([3, 0, 200, 0, 1, 2, 3]))), enc(END)), { offset: c0 + 10 + 8, commandIndex: 0 });
add('ATTR_OVERRUN', 'half-tlv-header', cat(H1, raw(3, cat(tlv(15, b('file')), Buffer.from([3]))), enc(END)), { offset: c0 + 10 + 8, commandIndex: 0 });
add('BAD_ATTRIBUTE_TYPE', 'type-0', cat(H1, raw(3, cat(tlv(0, b('x')))), enc(END)), { offset: c0 + 10, commandIndex: 0 });
add('BAD_ATTRIBUTE_TYPE', 'type-36', cat(H1, raw(3, cat(tlv(15, b('f')), tlv(36, b('x')))), enc(END)), { offset: c0 + 10 + 5, commandIndex: 0 });
add('MISSING_ATTRIBUTE', 'write-without-data', cat(H1, raw(15, cat(tlv(15, b('f')), tlv(18, Buffer.alloc(8)))), enc(END)), { offset: c0, commandIndex: 0 });
add('BAD_ATTRIBUTE_LENGTH', 'u64-offset-in-4-bytes', cat(H1, raw(15, cat(tlv(15, b('f')), tlv(18, Buffer.alloc(4)), tlv(19, b('x')))), enc(END)), { offset: c0, commandIndex: 0 });
add('UNKNOWN_COMMAND', 'id-99', cat(H2, enc(SUBVOL, 2), raw(99, tlv(15, b('f'))), enc(END, 2)), { offset: c1, commandIndex: 1 });

mkdirSync(dir, { recursive: true });
for (const f of readdirSync(dir)) if (f.endsWith('.stream')) rmSync(join(dir, f));
const expected = {};
for (const c of cases) {
  writeFileSync(join(dir, c.name), c.bytes);
  expected[c.name] = c.expect;
}
writeFileSync(join(dir, 'expected.json'), JSON.stringify(expected, null, 2) + '\n');
console.log(`wrote ${cases.length} failure streams to ${dir}`);
