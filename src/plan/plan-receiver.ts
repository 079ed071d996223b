import { compressExtent, type BtrfsCompressType } from '../compress/index.js';
import { decodeEncodedData } from '../receive/limits.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../stream/constants.js';
import type { Receiver } from '../stream/receiver.js';
import type * as T from '../stream/types.js';
import { PlanReport, extentPlan, type ExtentPlan } from './report.js';
import { codecName, planEncodedWrite, type PlanContext } from './rules.js';

export interface PlanOptions {
  sectorsize?: number;
  forceDecompress?: boolean;
  /** Recompress decompressed data with this codec (kept only when it saves a sector, as the kernel does). */
  compress?: { type: BtrfsCompressType; level?: number };
  codecAllowed?: PlanContext['codecAllowed'];
  /** Called for every encoded write, in stream order. */
  onExtent?: (e: ExtentPlan) => void;
}

interface Node { size: bigint }

/**
 * Walks a stream without an image and plans every ENCODED_WRITE. It tracks file sizes through the
 * namespace (renames, links, truncates) because the kernel's alignment rule depends on i_size. Files that
 * come from a parent subvolume have unknown sizes: they are taken as ending where the write ends, which is
 * the only place the kernel's own sender produces an unaligned end.
 */
export class PlanReceiver implements Receiver {
  readonly report = new PlanReport();
  private paths = new Map<string, Node>();
  private readonly ss: number;

  constructor(private readonly opts: PlanOptions = {}) {
    this.ss = opts.sectorsize ?? 4096;
  }

  private key(p: Uint8Array): string {
    return Buffer.from(p).toString('latin1');
  }

  private node(p: Uint8Array): Node | undefined {
    return this.paths.get(this.key(p));
  }

  private grow(p: Uint8Array, end: bigint): void {
    const n = this.node(p);
    if (n && end > n.size) n.size = end;
  }

  subvol(): void { this.paths.clear(); }
  snapshot(): void { this.paths.clear(); }
  private create(c: { path: Uint8Array }): void { this.paths.set(this.key(c.path), { size: 0n }); }
  mkfile(c: T.CreateCmd): void { this.create(c); }
  mkdir(c: T.CreateCmd): void { this.create(c); }
  mknod(c: T.CreateCmd): void { this.create(c); }
  mkfifo(c: T.CreateCmd): void { this.create(c); }
  mksock(c: T.CreateCmd): void { this.create(c); }
  symlink(c: T.SymlinkCmd): void { this.create(c); }
  rename(c: T.RenameCmd): void {
    const from = this.key(c.path);
    const to = this.key(c.pathTo);
    const moved: [string, Node][] = [];
    for (const [k, v] of this.paths) {
      if (k === from || k.startsWith(from + '/')) moved.push([k, v]);
    }
    for (const [k] of moved) this.paths.delete(k);
    for (const [k, v] of moved) this.paths.set(to + k.slice(from.length), v);
  }
  link(c: T.LinkCmd): void {
    const target = this.paths.get(this.key(c.pathLink));
    if (target) this.paths.set(this.key(c.path), target);
  }
  unlink(c: T.UnlinkCmd): void { this.paths.delete(this.key(c.path)); }
  rmdir(c: T.UnlinkCmd): void { this.paths.delete(this.key(c.path)); }
  setXattr(): void {}
  removeXattr(): void {}
  write(c: T.WriteCmd): void {
    this.grow(c.path, c.fileOffset + BigInt(c.data.length));
    this.report.addPlainWrite(c.data.length);
  }
  clone(c: T.CloneCmd): void { this.grow(c.path, c.fileOffset + c.cloneLen); }
  truncate(c: T.TruncateCmd): void {
    const n = this.node(c.path);
    if (n) n.size = c.size;
  }
  chmod(): void {}
  chown(): void {}
  utimes(): void {}
  updateExtent(): void {}
  fallocate(c: T.FallocateCmd): void {
    if (!(c.mode & (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))) this.grow(c.path, c.fileOffset + c.size);
  }
  fileattr(): void {}
  enableVerity(): void {}
  end(): void {}

  encodedWrite(c: T.EncodedWriteCmd): void {
    const n = this.node(c.path);
    const end = c.fileOffset + c.unencodedFileLen;
    const d = planEncodedWrite(c, {
      sectorsize: this.ss,
      iSize: n ? n.size : end,
      forceDecompress: this.opts.forceDecompress ?? false,
      ...(this.opts.codecAllowed ? { codecAllowed: this.opts.codecAllowed } : {}),
    });
    const e = extentPlan(c, d);
    if (d.action === 'decompress' && this.opts.compress) {
      // what the receiver would store: the file's part of the decoded extent (decoded with the receiver's
      // own size limits), compressed again
      const whole = d.diskType === undefined
        ? c.data
        : decodeEncodedData(d.diskType, c.data, c.unencodedLen, Number(c.unencodedOffset + c.unencodedFileLen), d.lzoSectorSize ?? this.ss);
      const plain = whole.subarray(Number(c.unencodedOffset), Number(c.unencodedOffset + c.unencodedFileLen));
      const again = plain.length <= 128 * 1024 ? compressExtent(this.opts.compress.type, plain, this.ss, this.opts.compress.level) : null;
      if (again) {
        e.action = 'recompress';
        e.recompressedTo = { codec: codecName(this.opts.compress.type), diskBytes: Math.ceil(again.length / this.ss) * this.ss };
      }
    }
    if (n && end > n.size) n.size = end;
    this.report.addEncoded(e);
    this.opts.onExtent?.(e);
  }
}
