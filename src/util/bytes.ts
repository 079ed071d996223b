/** Joins byte arrays; `into` (at least the total length) is reused instead of allocating. */
export function concatBytes(parts: readonly Uint8Array[], into?: Uint8Array): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = into ? into.subarray(0, len) : new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * A plain Uint8Array of `len` bytes whose contents are NOT zeroed, on its own ArrayBuffer (offset 0), for
 * buffers that are filled whole right away (reads, encoders): zero-filling them first costs a pass over
 * every byte. Not a Buffer, so `.slice()` still copies as callers expect.
 */
export function uninitBytes(len: number): Uint8Array {
  return new Uint8Array(Buffer.allocUnsafeSlow(len).buffer, 0, len);
}
