#!/usr/bin/env node
// Synthetic protocol-1 stream with many small files, to see how receive's memory grows with the number of
// inodes and extents (metadata is kept in memory until the commit). Each file: MKFILE under an orphan
// name, RENAME into one of 100 dirs, one 6000-byte WRITE (a regular extent, not inline), UTIMES.
// Usage: node bench/make-many-files.mjs N OUT.stream   (needs `npx tsc -p .` first)
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import * as C from '../dist/stream/constants.js';
import { encodeCommand, encodeStreamHeader } from '../dist/stream/writer.js';

const [nArg, outFile] = process.argv.slice(2);
if (!nArg || !outFile) {
  console.error('usage: make-many-files.mjs N OUT.stream');
  process.exit(2);
}
const N = Number(nArg);
const enc = new TextEncoder();
const out = createWriteStream(outFile);
const put = async (bytes) => {
  if (!out.write(bytes)) await once(out, 'drain');
};
const t = { sec: 1577934245n, nsec: 0 };
const cmd = (c) => encodeCommand(c, 1);
await put(encodeStreamHeader(1));
await put(cmd({ cmd: C.BTRFS_SEND_C_SUBVOL, path: enc.encode('many'), uuid: new Uint8Array(16).fill(7), ctransid: 10n }));
let ino = 257n;
for (let d = 0; d < 100; d++, ino++) {
  await put(cmd({ cmd: C.BTRFS_SEND_C_MKDIR, path: enc.encode(`o${ino}-1-0`), ino }));
  await put(cmd({ cmd: C.BTRFS_SEND_C_RENAME, path: enc.encode(`o${ino}-1-0`), pathTo: enc.encode(`d${d}`) }));
}
const data = new Uint8Array(6000);
for (let i = 0; i < N; i++, ino++) {
  const path = enc.encode(`d${i % 100}/f${i}`);
  data.fill(i & 0xff);
  await put(cmd({ cmd: C.BTRFS_SEND_C_MKFILE, path: enc.encode(`o${ino}-1-0`), ino }));
  await put(cmd({ cmd: C.BTRFS_SEND_C_RENAME, path: enc.encode(`o${ino}-1-0`), pathTo: path }));
  await put(cmd({ cmd: C.BTRFS_SEND_C_WRITE, path, fileOffset: 0n, data }));
  await put(cmd({ cmd: C.BTRFS_SEND_C_UTIMES, path, atime: t, mtime: t, ctime: t }));
}
for (let d = 0; d < 100; d++) {
  await put(cmd({ cmd: C.BTRFS_SEND_C_UTIMES, path: enc.encode(`d${d}`), atime: t, mtime: t, ctime: t }));
}
await put(cmd({ cmd: C.BTRFS_SEND_C_UTIMES, path: new Uint8Array(0), atime: t, mtime: t, ctime: t }));
await put(cmd({ cmd: C.BTRFS_SEND_C_END }));
out.end();
await once(out, 'finish');
console.error(`make-many-files: ${N} files -> ${outFile}`);
