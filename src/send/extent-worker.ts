/**
 * The thread of extent-ahead.ts, as plain JavaScript run with `eval` (a .ts worker file would not load
 * under the test runner). It imports the compiled modules by URL; when that fails (the test runner has no
 * compiled modules) it says so and the send reads and decodes in line.
 *
 * Per job (a message holds a few; one message answers them): the job of extent-job.ts, unless the send
 * has taken it (its slot's word is no longer this job's JOB_WAITING): then the answer only says so. `ok: false`
 * hands the extent back to the send (a mismatch, a sector without a checksum, a read error): its own
 * reading reports those with the words it always uses.
 */
export const EXTENT_WORKER = `(async () => {
const { parentPort, workerData } = await import('node:worker_threads');
const { openSync } = await import('node:fs');
const { modules, shared, states, slotSize, slotBytes, sumsSize, path, csumType, sectorsize } = workerData;
let job, ctx;
try {
  const codecs = await import(new URL('compress/index.js', modules).href);
  await codecs.initCodecs();
  const csum = await import(new URL('image/structs/csum.js', modules).href);
  job = await import(new URL('send/extent-job.js', modules).href);
  const algo = await csum.loadCsum(csumType);
  ctx = { shared, slotSize, slotBytes, sumsSize, algo, sectorsize };
  if (path !== undefined) ctx.fd = openSync(path, 'r');
} catch (e) {
  parentPort.postMessage({ unavailable: String(e && e.message) });
  return;
}
const state = new Int32Array(states);
parentPort.on('message', (jobs) => parentPort.postMessage(jobs.map((j) =>
  job.claimJob(state, j.slot, j.seq, job.JOB_WORKER) ? job.runJob(ctx, j) : { slot: j.slot, taken: true })));
})();`;
