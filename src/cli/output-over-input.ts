import { statSync } from 'node:fs';
import { BtrfsTsError } from '../errors.js';

/**
 * Refuses an output path that is one of the command's inputs (the same file, by any name): opening it for
 * writing empties it first. `send -f IMG IMG SUBVOL` emptied the image, failed reading it, and removed
 * what was left as a half-written stream; `convert -f S -o S` did the same to the stream.
 */
export function refuseOutputOverInput(output: string | undefined, inputs: (string | undefined)[], code: string, option: string): void {
  const out = output === undefined || output === '-' ? undefined : statSync(output, { throwIfNoEntry: false });
  if (!out || !out.isFile()) return;
  for (const input of inputs) {
    const st = input === undefined || input === '-' ? undefined : statSync(input, { throwIfNoEntry: false });
    if (st && st.dev === out.dev && st.ino === out.ino) {
      throw new BtrfsTsError(code, `${option} ${output} is ${input === output ? 'the input itself' : `the input ${input}`}: writing it would destroy what is read`);
    }
  }
}
