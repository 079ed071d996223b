import type { Command } from 'commander';
import { size } from '../util/size.js';

/**
 * One progress line on stderr for long commands: `LABEL  45% 120 MiB of 267 MiB, 80.0 MiB/s, ETA 0:02`,
 * redrawn in place at most five times a second and cleared before anything else is printed. Without a
 * known total it shows what is done and the rate. It is drawn only when asked (`--progress`) or, by
 * default, when stderr is a terminal — a log file or a pipe never gets carriage returns.
 */
export interface ProgressOptions {
  label: string;
  /** The CLI's --progress / --no-progress (undefined: neither given). */
  flag?: boolean | undefined;
  quiet?: boolean | undefined;
  /** The command prints its own output on stdout: with stdout on the same terminal, draw only when asked. */
  stdoutBusy?: boolean;
  /** 'bytes' (default) or a noun for counted things ('files'). */
  unit?: string;
  /** Where to draw (tests); default process.stderr. */
  out?: { write(s: string): unknown; isTTY?: boolean };
  /** Clock (tests); default Date.now. */
  now?: () => number;
}

const REDRAW_MS = 200;

export class Progress {
  total: number | undefined;
  done = 0;
  /** Extra words after the figures (e.g. "1234 commands"). */
  detail = '';
  readonly enabled: boolean;
  private readonly now: () => number;
  private readonly started: number;
  private lastDraw = 0;
  private drawn = false;

  constructor(private readonly o: ProgressOptions) {
    this.now = o.now ?? Date.now;
    this.started = this.now();
    // standard error is looked at only where a line may be drawn: making process.stderr loads node's stream
    // modules, which a quiet receive (its V8 flags make node compile them from source) paid ~35 M
    // instructions for
    this.enabled = o.flag ?? (!o.quiet && this.out.isTTY === true && !(o.stdoutBusy && process.stdout.isTTY));
  }

  private get out(): { write(s: string): unknown; isTTY?: boolean } {
    return this.o.out ?? process.stderr;
  }

  /** Sets the total (bytes or count) when it becomes known. */
  setTotal(total: number | undefined): void {
    this.total = total;
  }

  advance(n: number): void {
    this.done += n;
    this.tick();
  }

  set(done: number): void {
    this.done = done;
    this.tick();
  }

  /** Redraws when the last draw is old enough. */
  tick(): void {
    if (!this.enabled) return;
    if (this.drawn && this.now() - this.lastDraw < REDRAW_MS) return;
    this.draw();
  }

  /**
   * Draws the final figures whatever the redraw interval: a run shorter than one interval, or one whose
   * last redraw came before the end, would otherwise leave (or log) a line short of 100%.
   */
  finish(): void {
    if (this.enabled) this.draw();
  }

  private draw(): void {
    const t = this.now();
    this.lastDraw = t;
    this.drawn = true;
    this.out.write(`\r${this.line(t)}\x1b[K`);
  }

  /** Clears the line (before the command's own messages, and at the end). */
  clear(): void {
    if (this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
  }

  /** The text of the line at time `t` (ms). */
  line(t: number): string {
    const secs = Math.max((t - this.started) / 1000, 0.001);
    const bytes = this.o.unit === undefined || this.o.unit === 'bytes';
    const fmt = (n: number) => (bytes ? size(n) : `${n} ${this.o.unit}`);
    const rate = this.done / secs;
    const parts: string[] = [];
    if (this.total !== undefined && this.total > 0) {
      const pct = Math.min(100, Math.floor((this.done / this.total) * 100));
      parts.push(`${String(pct).padStart(3)}% ${fmt(this.done)} of ${fmt(this.total)}`);
    } else {
      parts.push(fmt(this.done));
    }
    parts.push(bytes ? `${size(rate)}/s` : `${rate.toFixed(0)}/s`);
    if (this.total !== undefined && this.total > this.done && rate > 0 && this.done > 0) {
      parts.push(`ETA ${clock((this.total - this.done) / rate)}`);
    }
    if (this.detail) parts.push(this.detail);
    return `${this.o.label} ${parts.join(', ')}`;
  }
}

/** Seconds as m:ss or h:mm:ss. */
export function clock(seconds: number): string {
  const s = Math.ceil(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** The options every long command takes; the command's options get `progress?: boolean`. */
export function withProgressOptions(cmd: Command): Command {
  return cmd
    .option('--progress', 'show progress (%, bytes, rate, ETA) on stderr even when it is not a terminal')
    .option('--no-progress', 'never show progress (default: shown when stderr is a terminal)');
}

/**
 * Runs `work` with a progress line, cleared afterwards whether it succeeds or fails, so an error message
 * or the command's summary starts on a clean line.
 */
export async function withProgress<T>(o: ProgressOptions, work: (p: Progress) => Promise<T>): Promise<T> {
  const p = new Progress(o);
  try {
    const result = await work(p);
    p.finish();
    return result;
  } finally {
    p.clear();
  }
}
