import * as fs from 'node:fs';

/**
 * Recognises what a file or block device already holds, by the magic numbers blkid also checks, so that
 * mkfs refuses to overwrite it without -f as mkfs.btrfs does. Only the first 68 KiB are read.
 */
interface Signature {
  name: string;
  offset: number;
  magic: Uint8Array;
}
const bytes = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const SIGNATURES: Signature[] = [
  { name: 'btrfs', offset: 0x10040, magic: bytes('_BHRfS_M') },
  { name: 'ext2/ext3/ext4', offset: 1024 + 56, magic: Uint8Array.of(0x53, 0xef) },
  { name: 'xfs', offset: 0, magic: bytes('XFSB') },
  { name: 'swap', offset: 4096 - 10, magic: bytes('SWAPSPACE2') },
  { name: 'swap', offset: 4096 - 10, magic: bytes('SWAP-SPACE') },
  { name: 'f2fs', offset: 1024, magic: Uint8Array.of(0x10, 0x20, 0xf5, 0xf2) },
  { name: 'squashfs', offset: 0, magic: bytes('hsqs') },
  { name: 'LUKS', offset: 0, magic: bytes('LUKS\xba\xbe') },
  { name: 'ntfs', offset: 3, magic: bytes('NTFS    ') },
  { name: 'vfat', offset: 82, magic: bytes('FAT32   ') },
  { name: 'vfat', offset: 54, magic: bytes('FAT16   ') },
  { name: 'vfat', offset: 54, magic: bytes('FAT12   ') },
  { name: 'iso9660', offset: 0x8001, magic: bytes('CD001') },
  { name: 'a GPT partition table', offset: 512, magic: bytes('EFI PART') },
];
const PROBE_BYTES = 0x10040 + 8;

/** Name of the filesystem (or partition table) found in the first bytes, or undefined. */
export function detectSignature(head: Uint8Array): string | undefined {
  for (const s of SIGNATURES) {
    if (head.length < s.offset + s.magic.length) continue;
    if (s.magic.every((b, i) => head[s.offset + i] === b)) return s.name;
  }
  return undefined;
}

/** What `path` already holds, or undefined when nothing is recognised (or it does not exist). */
export function probeFilesystem(path: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(PROBE_BYTES);
    let got = 0;
    while (got < PROBE_BYTES) {
      const n = fs.readSync(fd, head, got, PROBE_BYTES - got, got);
      if (n === 0) break;
      got += n;
    }
    return detectSignature(head.subarray(0, got));
  } finally {
    fs.closeSync(fd);
  }
}
