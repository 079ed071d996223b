/**
 * Buffers for read(2) to fill, starting on a page boundary. Why: on this kind of machine the kernel's copy
 * into user memory runs 3–4 times slower when the destination is not 64-byte aligned — pread of a file in
 * the page cache, 1 MiB at a time: 1.0–1.5 GB/s into a Buffer, an ArrayBuffer or a SharedArrayBuffer
 * (malloc'd: 16 bytes past a page boundary, or anywhere 16-byte aligned), 4.7–5.7 GB/s into page-aligned
 * memory (the same loop in C: 0.9–1.5 against 4.5–5.8 GB/s at offsets 8/16 against 0/64). Writes do not
 * care. JavaScript cannot see an ArrayBuffer's address, but a WebAssembly.Memory is mapped on its own
 * pages, so its first byte is page-aligned.
 *
 * Each memory reserves address space beyond its size (V8's guard region), so these are for the few
 * long-lived buffers reads go into, not for per-item allocations.
 */

/** Alignment read destinations are kept at (a cache line; the copy's fast path needs no more). */
export const READ_ALIGN = 64;

/** WebAssembly's page, the unit a memory's size is given in. */
const PAGE = 65536;

// The project's TypeScript lib has no WebAssembly declarations; this is the little used here.
interface WasmMemoryApi {
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => { buffer: ArrayBuffer | SharedArrayBuffer };
}
const WA = (globalThis as { WebAssembly?: WasmMemoryApi }).WebAssembly;

/** A memory of `len` bytes at least, or undefined where there is no WebAssembly (node --jitless). */
function memory(len: number, shared: boolean): ArrayBuffer | SharedArrayBuffer | undefined {
  if (WA === undefined) return undefined;
  const pages = Math.max(1, Math.ceil(len / PAGE));
  try {
    return new WA.Memory(shared ? { initial: pages, maximum: pages, shared } : { initial: pages }).buffer;
  } catch {
    return undefined; // out of address space for another reservation: unaligned memory still works
  }
}

/** `len` bytes (zeroed) whose first byte is page-aligned where WebAssembly is available, at offset 0 of their own buffer. */
export function alignedBytes(len: number): Uint8Array {
  return new Uint8Array(memory(len, false) ?? new ArrayBuffer(len), 0, len);
}

/** A SharedArrayBuffer of at least `len` bytes (zeroed), page-aligned where WebAssembly is available: memory a worker reads into. */
export function alignedShared(len: number): SharedArrayBuffer {
  return (memory(len, true) as SharedArrayBuffer | undefined) ?? new SharedArrayBuffer(len);
}

/** The padding that puts the end of `len` bytes placed at `pad` on a READ_ALIGN boundary. */
export function padToAlign(len: number): number {
  return (READ_ALIGN - (len % READ_ALIGN)) % READ_ALIGN;
}
