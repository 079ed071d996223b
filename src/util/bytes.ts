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
