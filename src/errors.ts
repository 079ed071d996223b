/**
 * One error base class for everything btrfs-ts refuses or fails at. Callers (the CLI, tests, the fuzzer)
 * rely on `instanceof BtrfsTsError` meaning "a diagnosed problem", so anything else escaping is a bug.
 */
export interface ErrorContext {
  /** Absolute byte offset in the input (stream or image) where the problem was found. */
  offset?: number | bigint;
  /** Send command name (e.g. `BTRFS_SEND_C_WRITE`) or image structure being processed. */
  command?: string;
  /** 0-based index of the command in the stream (counting across concatenated streams). */
  commandIndex?: number;
  /** Path inside the subvolume the command acts on. */
  path?: string;
  cause?: unknown;
}

export class BtrfsTsError extends Error {
  readonly code: string;
  offset: number | bigint | undefined;
  command: string | undefined;
  commandIndex: number | undefined;
  path: string | undefined;

  constructor(code: string, message: string, ctx: ErrorContext = {}) {
    super(message, ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.name = new.target.name;
    this.code = code;
    this.offset = ctx.offset;
    this.command = ctx.command;
    this.commandIndex = ctx.commandIndex;
    this.path = ctx.path;
  }

  /**
   * Fills in where the error happened when the code that threw could not know (an image helper deep
   * inside a receive knows neither the stream offset nor the command). Fields already set are kept.
   */
  withContext(ctx: ErrorContext): this {
    this.offset ??= ctx.offset;
    this.command ??= ctx.command;
    this.commandIndex ??= ctx.commandIndex;
    this.path ??= ctx.path;
    return this;
  }

  /** One line for humans: where, which command, which path, what. */
  describe(): string {
    const where: string[] = [];
    if (this.offset !== undefined) where.push(`at byte ${this.offset}`);
    if (this.commandIndex !== undefined) where.push(`command #${this.commandIndex}`);
    if (this.command !== undefined) where.push(this.command);
    if (this.path !== undefined) where.push(`path ${JSON.stringify(this.path)}`);
    return `${where.length ? where.join(', ') + ': ' : ''}${this.message} [${this.code}]`;
  }
}

/** Malformed or unsupported send stream bytes. */
export class StreamError extends BtrfsTsError {}
/** A well-formed stream whose commands cannot be applied (missing parent, bad path, ...). */
export class ReceiveError extends BtrfsTsError {}
/** Corrupt or unsupported btrfs image, or an image that ran out of room. */
export class ImageError extends BtrfsTsError {}
/**
 * The writer refuses an image it must not change (the image is left as it was): one wording for every
 * such refusal, `cannot modify this image: WHY`.
 */
export function cannotModify(code: string, why: string, ctx: ErrorContext = {}): ImageError {
  return new ImageError(code, `cannot modify this image: ${why}`, ctx);
}
/** Compressed data that does not decode, or decodes to the wrong size. */
export class CodecError extends BtrfsTsError {}
/** A send that cannot be made as asked (subvolume not read-only, unrelated parent, unsupported option). */
export class SendError extends BtrfsTsError {}
