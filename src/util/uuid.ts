/** UUIDs as btrfs-progs prints and reads them (lower-case 8-4-4-4-12 hex). */

export function formatUuid(u: Uint8Array): string {
  const h = Buffer.from(u.buffer, u.byteOffset, u.length).toString('hex');
  // only 16 bytes are a uuid; anything else is shown as plain hex rather than cut into groups
  if (h.length !== 32) return h;
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A uuid given with or without dashes, any case; null when it is not 16 hex bytes. */
export function parseUuid(s: string): Uint8Array | null {
  const h = s.replaceAll('-', '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(h)) return null;
  return Uint8Array.from(Buffer.from(h, 'hex'));
}

/** All zeroes: "no uuid" in root items and where a full send has no parent. */
export function isZeroUuid(u: Uint8Array): boolean {
  return u.every((b) => b === 0);
}
