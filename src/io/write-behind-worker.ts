/**
 * The write-behind thread (write-behind.ts): its record layout and the script it runs. Each record is
 * [op, position, length, image offset, lent]: the position is in the ring, in lent buffer number `lent`
 * (OP_LENT), or in the file whose descriptor `lent` is (OP_COPY); -1 when unused.
 */
export const OP_WRITE = 1;
export const OP_FSYNC = 2;
export const OP_DIRECT = 3;
/** A direct write (as OP_DIRECT) from a lent buffer. */
export const OP_LENT = 4;
/** The file extended to the record's offset (a larger device), in order with the writes. */
export const OP_EXTEND = 5;
/** Bytes copied from another file (its descriptor in the record's last field, the position its offset) with copy_file_range. */
export const OP_COPY = 6;
/** Fields per record. */
export const REC = 5;
export const SLOTS = 4096; // power of two: slot = counter & (SLOTS - 1) also for wrapped (negative) counters
/** Direct writes in flight at once: one at a time, the disk idled between them (docs/performance.md, recv13). */
export const DIRECT_DEPTH = 2;

/**
 * Plain JS run by the worker (eval: a .ts worker file would not load under the test runner; dynamic
 * imports work whether node treats eval code as CommonJS or as a module). Every WRITEBACK_BYTES it starts
 * an fdatasync in libuv's pool while writing goes on, so the data reaches the disk during the receive
 * instead of all at the final fsync (Atomics.waitAsync, which would keep the event loop turning while
 * idle, was not woken reliably by the producer's notify: the thread polls while a sync is out). Their errors count as failures
 * (an fsync reports a writeback error only once per file: the final fsync would not see it again).
 */
export const WORKER = `(async () => {
const fs = await import('node:fs');
const { workerData, receiveMessageOnPort } = await import('node:worker_threads');
const { fd, ctrlBuf, recBuf, dataBuf, port, writebackBytes, addonPath } = workerData;
let directFd = workerData.directFd;
const ctrl = new Int32Array(ctrlBuf), recs = new Float64Array(recBuf), data = new Uint8Array(dataBuf);
let done = 0, failed = false, syncing = 0, unsynced = 0;
// lent buffers by number, each sent once through the port before the first record that uses it
const lent = [];
const lentBuf = (n) => {
  while (lent[n] === undefined) {
    const m = receiveMessageOnPort(port);
    if (m === undefined) throw new Error('lent buffer ' + n + ' never arrived');
    lent[m.message.n] = new Uint8Array(m.message.buf);
  }
  return lent[n];
};
const fail = (op, len, off, e) => {
  if (failed) return;
  // the message goes out before the flag: whoever sees the flag finds the message
  failed = true;
  port.postMessage({ op, len, off, message: String(e && e.message), code: e && e.code });
  Atomics.store(ctrl, 2, 1);
};
// copy_file_range through the addon, loaded at the first copy; where it is missing or fails, through a buffer
let copyRange;
let copyBuf;
const copy = async (src, from, len, off) => {
  if (copyRange === undefined) {
    copyRange = null;
    if (process.env.BTRFS_TS_NATIVE !== 'off') try {
      const { createRequire } = await import('node:module');
      const a = createRequire(addonPath)(addonPath);
      if (typeof a.copyFileRange === 'function') copyRange = a.copyFileRange;
    } catch {}
  }
  let done = 0;
  while (done < len && copyRange) {
    let n;
    try {
      n = copyRange(src, from + done, fd, off + done, len - done);
    } catch {
      // whatever the kernel refused (another file system type, an old kernel, a file system without it),
      // the rest goes through the buffer below, which meets a real read or write error again in node's words
      copyRange = null;
      break;
    }
    if (n === 0) throw new Error('the input file ends before byte ' + (from + len));
    done += n;
  }
  while (done < len) {
    if (!copyBuf || copyBuf.length < len - done) copyBuf = Buffer.allocUnsafe(Math.max(len - done, 1 << 20));
    const n = fs.readSync(src, copyBuf, 0, len - done, from + done);
    if (n === 0) throw new Error('the input file ends before byte ' + (from + len));
    for (let w = 0; w < n; ) w += fs.writeSync(fd, copyBuf, w, n - w, off + done + w);
    done += n;
  }
};
const writeback = () => {
  syncing++;
  fs.fdatasync(fd, (e) => { syncing--; if (e) fail(${OP_FSYNC}, 0, 0, e); });
};
Atomics.store(ctrl, 5, 1);
// direct writes in flight (libuv's pool), oldest first; a record counts as done once it and all before it are
const flying = [];
let taken = 0;
const finish = () => {
  done = (done + 1) | 0;
  Atomics.store(ctrl, 1, done);
  if (Atomics.load(ctrl, 4) !== 0) Atomics.notify(ctrl, 1);
};
const land = async () => { await flying.shift().p; finish(); };
// the rest of a direct write the disk did not take whole (or all of it, once direct I/O is refused) through the page cache
const rest = (src, pos, len, off, n) => {
  if (n >= len) return;
  for (; n < len; ) n += fs.writeSync(fd, src, pos + n, len - n, off + n);
  unsynced += len;
};
const direct = (src, pos, len, off) => new Promise((res) => {
  fs.write(directFd, src, pos, len, off, (e, n) => {
    try {
      // the file system (or the memory, where WebAssembly is missing) refuses direct I/O: the page cache from now on
      if (e && e.code !== 'EINVAL') throw e;
      if (e) directFd = -1;
      if (!failed) rest(src, pos, len, off, e ? 0 : n);
    } catch (err) {
      fail(${OP_DIRECT}, len, off, err);
    }
    res();
  });
});
for (;;) {
  const queued = Atomics.load(ctrl, 0);
  if (queued === taken) {
    if (flying.length > 0) { await land(); continue; }
    // a background fdatasync's callback needs this thread's event loop: poll while one is out
    if (syncing > 0) { await new Promise((res) => setTimeout(res, 1)); continue; }
    Atomics.store(ctrl, 3, 1);
    Atomics.wait(ctrl, 0, taken);
    Atomics.store(ctrl, 3, 0);
    continue;
  }
  while (taken !== queued) {
    const r = (taken & ${SLOTS - 1}) * ${REC};
    const op = recs[r], pos = recs[r + 1], len = recs[r + 2], off = recs[r + 3];
    taken = (taken + 1) | 0;
    let src = data;
    if (op === ${OP_LENT}) {
      try {
        src = lentBuf(recs[r + 4]);
      } catch (e) {
        fail(op, len, off, e);
      }
    }
    if ((op === ${OP_DIRECT} || op === ${OP_LENT}) && directFd >= 0 && !failed) {
      // the disk takes the next while one is written (one at a time it idled between them); a write
      // over one still in flight waits for it, as every other record waits for all of them
      while (flying.length >= ${DIRECT_DEPTH} || flying.some((f) => f.off < off + len && off < f.off + f.len)) await land();
      flying.push({ p: direct(src, pos, len, off), off, len });
      continue;
    }
    while (flying.length > 0) await land();
    if (op === ${OP_FSYNC}) while (syncing > 0) await new Promise((res) => setImmediate(res));
    if (!failed) {
      try {
        if (op === ${OP_DIRECT} || op === ${OP_LENT}) {
          rest(src, pos, len, off, 0);
        } else if (op === ${OP_WRITE} || op === ${OP_COPY}) {
          if (op === ${OP_COPY}) await copy(recs[r + 4], pos, len, off);
          else for (let n = 0; n < len; ) n += fs.writeSync(fd, data, pos + n, len - n, off + n);
          unsynced += len;
          if (writebackBytes > 0 && unsynced >= writebackBytes) {
            if (syncing > 0) await new Promise((res) => setImmediate(res));
            if (syncing === 0) {
              unsynced = 0;
              writeback();
            }
          }
        } else if (op === ${OP_EXTEND}) {
          // never a cut: the file may already reach past it (a write beyond the old end)
          if (fs.fstatSync(fd).size < off) fs.ftruncateSync(fd, off);
        } else {
          fs.fsyncSync(fd);
          unsynced = 0;
        }
      } catch (e) {
        fail(op, len, off, e);
      }
    }
    finish();
  }
}
})();
`;
