import { formatDumpTime } from '../dump/time.js';
import { formatUuid } from '../util/uuid.js';

/** How btrfs-progs prints values in `subvolume list` and `subvolume show`. */

/** A uuid, or "-" for the zero uuid (uuid_is_null). */
export const uuidOrDash = (u: Uint8Array): string => (u.every((b) => b === 0) ? '-' : formatUuid(u));

/**
 * strftime("%Y-%m-%d %X", localtime_r(sec)) in the C locale, with " %z" after it when `zone`; "-" for 0,
 * as progs prints an unset time.
 */
export function progsLocalTime(sec: bigint, zone: boolean): string {
  if (sec === 0n) return '-';
  const iso = formatDumpTime(sec); // "%FT%T%z"
  if (iso === undefined) return '-';
  const local = iso.slice(0, -5).replace('T', ' ');
  return zone ? `${local} ${iso.slice(-5)}` : local;
}
