/**
 * Stream files as backup tools store them: zstd-, gzip- or xz-compressed, recognised by their magic
 * bytes, decompressed on the fly with bounded memory (a chunk at a time, back-pressure both ways).
 *
 * gzip: node:zlib, in process. zstd: node:zlib where this Node has it (22.15 and later); Node 20 does
 * not, and @bokuweb/zstd-wasm only decodes whole buffers (a 1 GiB stream would be held whole), so the
 * `zstd` program is run instead. xz: node:zlib has no xz at all, so `xz -dc` is run. A missing program
 * is a one-line error saying which to install.
 */
import { Readable } from 'node:stream';
import { BtrfsTsError } from '../errors.js';
import { nodeChildProcess, nodeZlib } from '../util/lazy-builtins.js';
import type { Compression, DestroyableInput } from './compression-magic.js';

type ZstdFactory = () => NodeJS.ReadWriteStream & Readable;

/** The decompressed bytes of `source` (already known to be `kind`); `name` is for error messages. */
export function decompressed(source: Readable, kind: Compression, name: string): DestroyableInput {
  const zlib = nodeZlib();
  const zstdInProcess = (zlib as unknown as { createZstdDecompress?: ZstdFactory }).createZstdDecompress;
  if (kind === 'gzip' || (kind === 'zstd' && zstdInProcess)) {
    const z = kind === 'gzip' ? zlib.createGunzip() : zstdInProcess!();
    source.on('error', (e) => z.destroy(e));
    source.pipe(z);
    return wrap(z, () => source.destroy(), (e) => new BtrfsTsError('INPUT_DECOMPRESS', `${name}: ${kind} data does not decompress: ${e.message}`, { cause: e }));
  }
  const prog = kind === 'zstd' ? 'zstd' : 'xz';
  const child = nodeChildProcess().spawn(prog, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
  let spawnError: NodeJS.ErrnoException | undefined;
  const exited = new Promise<number | null>((res) => {
    child.on('error', (e) => { spawnError = e; res(null); });
    child.on('close', (code) => res(code));
  });
  // a decoder that stops reading (bad data) ends the pipe; that is reported through its exit status
  child.stdin.on('error', () => undefined);
  source.on('error', (e) => child.stdout.destroy(e));
  source.pipe(child.stdin);
  const out = child.stdout;
  const iterable: DestroyableInput = {
    async *[Symbol.asyncIterator]() {
      let readError: unknown;
      try {
        for await (const chunk of out) yield chunk as Buffer;
      } catch (e) {
        // Ctrl-C in receive (destroy) — or the pipe broken because the program failed: see its status
        if (e instanceof BtrfsTsError) throw e;
        readError = e;
      }
      const code = await exited;
      if (spawnError?.code === 'ENOENT') {
        throw new BtrfsTsError('INPUT_DECOMPRESS', `${name} is ${kind}-compressed and the ${prog} program is not installed: install ${prog} or decompress the file first`);
      }
      if (spawnError) throw new BtrfsTsError('INPUT_DECOMPRESS', `${name}: cannot run ${prog}: ${spawnError.message}`, { cause: spawnError });
      if (code !== 0) {
        const why = stderr.trim().split('\n').pop() ?? '';
        throw new BtrfsTsError('INPUT_DECOMPRESS', `${name}: ${kind} data does not decompress (${prog} exit ${code}${why ? `: ${why}` : ''})`);
      }
      if (readError) throw readError;
    },
    destroy(err: Error) {
      source.destroy();
      child.kill();
      out.destroy(err);
    },
  };
  return iterable;
}

function wrap(stream: Readable, stopSource: () => void, diagnose: (e: Error) => BtrfsTsError): DestroyableInput {
  let destroyedWith: Error | undefined;
  return {
    async *[Symbol.asyncIterator]() {
      try {
        for await (const chunk of stream) yield chunk as Buffer;
      } catch (e) {
        if (e === destroyedWith || e instanceof BtrfsTsError) throw e;
        throw diagnose(e as Error);
      }
    },
    destroy(err: Error) {
      destroyedWith = err;
      stopSource();
      stream.destroy(err);
    },
  };
}
