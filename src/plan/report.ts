import { escapePath } from '../dump/escape.js';
import { size } from '../util/size.js';
import type { EncodedWriteCmd } from '../stream/types.js';
import { codecName, type PlanDecision, type ReasonCode } from './rules.js';

export type FinalAction = 'pass-through' | 'decompress' | 'recompress';

/** One encoded write as the planner saw it, for per-extent output. */
export interface ExtentPlan {
  offset: number;
  path: string;
  fileOffset: bigint;
  codec: string;
  encodedLen: number;
  fileLen: bigint;
  action: FinalAction;
  reasons: { code: ReasonCode; detail: string }[];
  /** For recompress: the codec and on-disk size it got. */
  recompressedTo?: { codec: string; diskBytes: number };
}

interface Bucket {
  extents: number;
  encodedBytes: number;
  fileBytes: number;
}

/** What the totals count of an extent (receive needs no more: escaping its path per extent was waste). */
export type ExtentCounts = Pick<ExtentPlan, 'codec' | 'encodedLen' | 'fileLen' | 'action' | 'reasons'>;

const bucket = (): Bucket => ({ extents: 0, encodedBytes: 0, fileBytes: 0 });
function add(b: Bucket, e: ExtentCounts): void {
  b.extents++;
  b.encodedBytes += e.encodedLen;
  b.fileBytes += Number(e.fileLen);
}

export interface PlanTotals {
  encodedWrites: Bucket;
  byAction: Record<FinalAction, Bucket>;
  byCodec: Record<string, Record<FinalAction, Bucket>>;
  byReason: Partial<Record<ReasonCode, Bucket>>;
  /** Plain WRITE commands (protocol 1 data, or v2 data the kernel did not compress). */
  plainWrites: Bucket;
}

/** Accumulates decisions into the totals `plan` and `receive -v` report. */
export class PlanReport {
  readonly totals: PlanTotals = {
    encodedWrites: bucket(),
    byAction: { 'pass-through': bucket(), decompress: bucket(), recompress: bucket() },
    byCodec: {},
    byReason: {},
    plainWrites: bucket(),
  };

  addEncoded(e: ExtentCounts): void {
    const t = this.totals;
    add(t.encodedWrites, e);
    add(t.byAction[e.action], e);
    const perCodec = (t.byCodec[e.codec] ??= { 'pass-through': bucket(), decompress: bucket(), recompress: bucket() });
    add(perCodec[e.action], e);
    for (const r of e.reasons) add((t.byReason[r.code] ??= bucket()), e);
  }

  addPlainWrite(len: number): void {
    this.totals.plainWrites.extents++;
    this.totals.plainWrites.fileBytes += len;
  }

  /** Human-readable totals, one fact per line. */
  format(): string {
    const t = this.totals;
    const lines = [
      `encoded writes: ${t.encodedWrites.extents} (${size(t.encodedWrites.encodedBytes)} encoded, ${size(t.encodedWrites.fileBytes)} of file data)`,
    ];
    for (const a of ['pass-through', 'decompress', 'recompress'] as const) {
      const b = t.byAction[a];
      const codecs = Object.entries(t.byCodec).filter(([, v]) => v[a].extents > 0).map(([k, v]) => `${k} ${v[a].extents}`);
      lines.push(`  ${a}: ${b.extents} extents, ${size(b.encodedBytes)} encoded, ${size(b.fileBytes)} of file data${codecs.length ? ` [${codecs.join(', ')}]` : ''}`);
    }
    const reasons = Object.entries(t.byReason);
    if (reasons.length) {
      lines.push('  reasons for decompressing:');
      for (const [code, b] of reasons) lines.push(`    ${code}: ${b!.extents} extents, ${size(b!.fileBytes)} of file data`);
    }
    lines.push(`plain writes: ${t.plainWrites.extents} (${size(t.plainWrites.fileBytes)})`);
    return lines.join('\n') + '\n';
  }
}

/** The report line of one planned ENCODED_WRITE (`action` overrides the decision's, e.g. recompress). */
export function extentPlan(c: EncodedWriteCmd, d: PlanDecision, action: FinalAction = d.action): ExtentPlan {
  return { offset: c.meta?.offset ?? 0, path: escapePath(c.path), fileOffset: c.fileOffset, ...extentCounts(c, d, action) };
}

/** extentPlan's counted part alone. */
export function extentCounts(c: EncodedWriteCmd, d: PlanDecision, action: FinalAction = d.action): ExtentCounts {
  return { codec: codecName(d.diskType), encodedLen: c.data.length, fileLen: c.unencodedFileLen, action, reasons: d.reasons };
}
