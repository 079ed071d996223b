/**
 * One job of extent-ahead.ts — read an extent's stored bytes into its slot from the first copy whose
 * sectors all match the checksums the send put in the slot, then decode them into the slot's second part
 * — as one function that both threads run: the reading thread (extent-worker.ts imports this compiled
 * module) for the jobs it gets to first, the send's thread for the ones it takes while it would otherwise
 * wait (ExtentAhead.claim). A word per slot says who has its job: whoever swaps it from the job's
 * WAITING does it. The word holds the job's sequence number too, so that a slot the send took a job of
 * can be reused at once: the worker, reaching the old job later, finds another job's word and passes.
 */
import { decompressExtent, type BtrfsCompressType } from '../compress/index.js';
import { firstBadSector, type CsumAlgo } from '../image/structs/csum.js';
import { readFullAt } from '../io/read-full.js';

/** Job states (one Int32 per slot, shared): announced, being done by the reading thread, taken by the send. */
export const JOB_WAITING = 0;
export const JOB_WORKER = 1;
export const JOB_SEND = 2;
/** Sequence numbers wrap here (the word keeps the state in its low 2 bits). */
export const JOB_SEQ_MASK = (1 << 29) - 1;
export const jobWord = (seq: number, state: number): number => (seq << 2) | state;

/** Whether `by` (JOB_WORKER or JOB_SEND) got job `seq` of `slot`: it swapped the slot's word from that job's JOB_WAITING. */
export function claimJob(states: Int32Array, slot: number, seq: number, by: number): boolean {
  const waiting = jobWord(seq, JOB_WAITING);
  return Atomics.compareExchange(states, slot, waiting, jobWord(seq, by)) === waiting;
}

export interface JobContext {
  shared: SharedArrayBuffer;
  slotSize: number;
  slotBytes: number;
  sumsSize: number;
  /** The image file, opened for reading (undefined: the send has put the stored bytes in the slot). */
  fd?: number;
  algo: CsumAlgo;
  sectorsize: number;
}

export interface Job {
  slot: number;
  /** Sequence number of the announcement (see jobWord). */
  seq: number;
  len: number;
  /** Physical offsets of the copies to read, in order (absent: the bytes are in the slot already). */
  copies?: number[];
  /** Sectors with checksums in the slot (absent: not verified). */
  sectors?: number;
  decode?: { type: BtrfsCompressType; ramBytes: number };
}

/** `ok: false`: left to the send's own reading (a mismatch on every copy, a read error); `error`: a codec error. */
export interface JobAnswer {
  slot: number;
  ok?: boolean;
  error?: { code?: string; message: string };
  /** The reading thread found the job taken by the send (nothing done, the slot may hold another job now). */
  taken?: boolean;
}

export function runJob(c: JobContext, { slot, len, copies, sectors, decode }: Job): JobAnswer {
  const base = slot * c.slotBytes;
  const input = new Uint8Array(c.shared, base, len);
  if (copies) {
    const sums = sectors === undefined ? undefined : new Uint8Array(c.shared, base + 2 * c.slotSize, sectors * c.algo.size);
    const have = sectors === undefined ? undefined : new Uint8Array(c.shared, base + 2 * c.slotSize + c.sumsSize, sectors);
    let ok = false;
    try {
      for (const phys of copies) {
        readFullAt(c.fd!, input, phys);
        if (!sums || firstBadSector(c.algo, input, len, c.sectorsize, sums, have!) < 0) {
          ok = true;
          break;
        }
      }
    } catch {
      ok = false;
    }
    if (!ok) return { slot, ok: false };
  }
  if (decode) {
    const output = new Uint8Array(c.shared, base + c.slotSize, c.slotSize);
    try {
      const out = decompressExtent(decode.type, input, decode.ramBytes, c.sectorsize, output);
      if (out.buffer !== c.shared || out.byteOffset !== base + c.slotSize) output.set(out);
    } catch (e) {
      const err = e as { code?: string; message?: string };
      return { slot, error: { ...(err?.code !== undefined ? { code: err.code } : {}), message: String(err?.message) } };
    }
  }
  return { slot, ok: true };
}
