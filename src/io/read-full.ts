import { readSync } from 'node:fs';

/**
 * Fills `buf` from file offset `pos` of `fd` (pread, repeated until it is full); what lies past the end of
 * the file reads as zeros, as an image's unwritten tail does. Read errors are the caller's to report. The
 * send's two reading threads (extent-job.ts, data-fill-worker.ts) and the image file share it.
 */
export function readFullAt(fd: number, buf: Uint8Array, pos: number): void {
  for (let done = 0; done < buf.length;) {
    const n = readSync(fd, buf, done, buf.length - done, pos + done);
    if (n === 0) {
      buf.fill(0, done);
      return;
    }
    done += n;
  }
}
