/**
 * `strftime("%FT%T%z", localtime_r(sec))` as glibc prints it: the year unpadded (and negative before
 * year 1), the offset in whole minutes truncated toward zero. Local time follows the process TZ, as in
 * btrfs-progs. Returns undefined where glibc's localtime_r fails (tm_year overflows an int).
 * Outside JS Date's range the zone's rules are taken from a date 400·k years away.
 */
const MAX_JS_SEC = 8_640_000_000_000n;
const CYCLE_SEC = 146097n * 86400n;

export function formatDumpTime(sec: bigint): string | undefined {
  const offsetSec = localOffsetSeconds(sec);
  const local = sec + BigInt(offsetSec);
  const days = floorDiv(local, 86400n);
  const secOfDay = Number(local - days * 86400n);
  const { y, m, d } = civilFromDays(days);
  const tmYear = y - 1900n;
  if (tmYear > 2147483647n || tmYear < -2147483648n) return undefined;
  // glibc computes tm_year + 1900 in int arithmetic, which wraps for the very last representable years
  const year = BigInt.asIntN(32, tmYear + 1900n);
  const hh = Math.floor(secOfDay / 3600);
  const mm = Math.floor((secOfDay % 3600) / 60);
  const ss = secOfDay % 60;
  const offMin = Math.trunc(Math.abs(offsetSec) / 60);
  const sign = offsetSec < 0 ? '-' : '+';
  return `${year}-${p2(m)}-${p2(d)}T${p2(hh)}:${p2(mm)}:${p2(ss)}${sign}${p2(Math.floor(offMin / 60))}${p2(offMin % 60)}`;
}

function p2(n: number): string {
  return n < 10 ? '0' + n : String(n);
}

/** Exact UTC offset (seconds) of the local zone at `sec`; beyond JS Date's range the offset at its edge. */
function localOffsetSeconds(sec: bigint): number {
  // Out of Date's range, move by whole 400-year Gregorian cycles (same weekdays, so same DST rules).
  let shifted = sec;
  if (sec > MAX_JS_SEC - CYCLE_SEC) shifted = sec - (floorDiv(sec - (MAX_JS_SEC - CYCLE_SEC), CYCLE_SEC) + 1n) * CYCLE_SEC;
  else if (sec < -MAX_JS_SEC + CYCLE_SEC) shifted = sec + (floorDiv(-MAX_JS_SEC + CYCLE_SEC - sec, CYCLE_SEC) + 1n) * CYCLE_SEC;
  const s = Number(shifted);
  const dt = new Date(s * 1000);
  const asUtc = Date.UTC(dt.getFullYear(), dt.getMonth(), dt.getDate(), dt.getHours(), dt.getMinutes(), dt.getSeconds());
  // Date.UTC maps years 0..99 to 1900..1999; setUTCFullYear does not
  const fix = new Date(asUtc);
  fix.setUTCFullYear(dt.getFullYear());
  return Math.round((fix.getTime() - s * 1000) / 1000);
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? q - 1n : q;
}

/** Proleptic Gregorian date from days since 1970-01-01 (H. Hinnant's civil_from_days), exact for any size. */
function civilFromDays(z0: bigint): { y: bigint; m: number; d: number } {
  const z = z0 + 719468n;
  const era = floorDiv(z, 146097n);
  const doe = z - era * 146097n;
  const yoe = (doe - doe / 1460n + doe / 36524n - doe / 146096n) / 365n;
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n);
  const mp = (5n * doy + 2n) / 153n;
  const d = Number(doy - (153n * mp + 2n) / 5n + 1n);
  const m = Number(mp < 10n ? mp + 3n : mp - 9n);
  const y = yoe + era * 400n + (m <= 2 ? 1n : 0n);
  return { y, m, d };
}
