/** A device number as Linux writes it in sysfs and mountinfo, MAJOR:MINOR (glibc's major() and minor()). */
export function majorMinor(rdev: bigint): string {
  return `${((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)}:${(rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)}`;
}
