/**
 * The thread of extent-ahead.ts, as plain JavaScript run with `eval` (a .ts worker file would not load
 * under the test runner). It imports the compiled codec and checksum modules by URL; when that fails (the
 * test runner has no compiled modules) it says so and the send reads and decodes in line.
 *
 * Per job (a message holds a few; one message answers them): read the extent's stored bytes into its slot from the first copy whose sectors all match
 * the checksums the send put in the slot (when the send passed copies; otherwise the send has filled the
 * slot), then decode them into the slot's second part when asked. `ok: false` hands the extent back to the send (a mismatch, a
 * sector without a checksum, a read error): its own reading reports those with the words it always uses.
 */
export const EXTENT_WORKER = `(async () => {
const { parentPort, workerData } = await import('node:worker_threads');
const { openSync, readSync } = await import('node:fs');
const { modules, shared, slotSize, slotBytes, sumsSize, path, csumType, sectorsize } = workerData;
let codecs, csum, algo, fd;
try {
  codecs = await import(new URL('compress/index.js', modules).href);
  await codecs.initCodecs();
  csum = await import(new URL('image/structs/csum.js', modules).href);
  algo = await csum.loadCsum(csumType);
  if (path !== undefined) fd = openSync(path, 'r');
} catch (e) {
  parentPort.postMessage({ unavailable: String(e && e.message) });
  return;
}
function readAll(buf, len, pos) {
  for (let done = 0; done < len;) {
    const n = readSync(fd, buf, done, len - done, pos + done);
    if (n === 0) { buf.fill(0, done, len); return; }
    done += n;
  }
}
parentPort.on('message', (jobs) => parentPort.postMessage(jobs.map(run)));
function run({ slot, len, copies, sectors, decode }) {
  const base = slot * slotBytes;
  const input = new Uint8Array(shared, base, len);
  const sums = sectors === undefined ? undefined : new Uint8Array(shared, base + 2 * slotSize, sectors * algo.size);
  const have = sectors === undefined ? undefined : new Uint8Array(shared, base + 2 * slotSize + sumsSize, sectors);
  if (copies) {
    let ok = false;
    try {
      for (const phys of copies) {
        readAll(input, len, phys);
        if (!sums || csum.firstBadSector(algo, input, len, sectorsize, sums, have) < 0) { ok = true; break; }
      }
    } catch {
      ok = false;
    }
    if (!ok) return { slot, ok: false };
  }
  if (decode) {
    const output = new Uint8Array(shared, base + slotSize, slotSize);
    try {
      const out = codecs.decompressExtent(decode.type, input, decode.ramBytes, sectorsize, output);
      if (out.buffer !== shared || out.byteOffset !== base + slotSize) output.set(out);
    } catch (e) {
      return { slot, error: { code: e && e.code, message: String(e && e.message) } };
    }
  }
  return { slot, ok: true };
}
})();`;
