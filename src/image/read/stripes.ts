import { ImageError } from '../../errors.js';
import {
  BTRFS_BLOCK_GROUP_DUP, BTRFS_BLOCK_GROUP_PROFILE_MASK, BTRFS_BLOCK_GROUP_RAID0, BTRFS_BLOCK_GROUP_RAID1, BTRFS_BLOCK_GROUP_RAID10,
  BTRFS_BLOCK_GROUP_RAID1C3, BTRFS_BLOCK_GROUP_RAID1C4, BTRFS_BLOCK_GROUP_RAID5, BTRFS_BLOCK_GROUP_RAID6, type BtrfsChunk,
} from '../structs.js';

/**
 * One whole copy of a chunk's bytes as it lies on the devices (the read side of the kernel's
 * btrfs_map_block, no parity or reconstruction): `members` are the stripes holding this copy, in stripe
 * order. A linear copy (SINGLE, DUP, RAID1*) is one member, the chunk's bytes in a row; a striped copy
 * (RAID0, one half of RAID10, the data of RAID5/6) spreads them `stripeLen` bytes at a time over its
 * members, RAID5/6 turning the data's place by one member every full stripe as the parity turns.
 */
export interface CopyLayout {
  members: { devid: bigint; offset: bigint }[];
  stripeLen: bigint;
  /** Data members per full stripe: members.length, less the parity members of RAID5 (1) and RAID6 (2). */
  dataStripes: number;
  /** RAID5/6: the data's first member moves by one every full stripe. */
  rotate: boolean;
}

/** The only stripe length there is (BTRFS_STRIPE_LEN): 64 KiB. */
export const BTRFS_STRIPE_LEN = 65536n;

/** Where chunk offset `o` of a copy is: the device, its offset there, and how many bytes follow it in a row. */
export function locate(l: CopyLayout, o: bigint): { devid: bigint; physical: bigint; run: bigint } {
  if (l.members.length === 1) return { devid: l.members[0]!.devid, physical: l.members[0]!.offset + o, run: 1n << 62n };
  const stripe = o / l.stripeLen;
  const within = o % l.stripeLen;
  const data = BigInt(l.dataStripes);
  const row = stripe / data;
  let index = stripe % data;
  if (l.rotate) index = (index + row) % BigInt(l.members.length);
  const m = l.members[Number(index)]!;
  return { devid: m.devid, physical: m.offset + row * l.stripeLen + within, run: l.stripeLen - within };
}

/**
 * The copies of a chunk that can be read whole, each one layout: SINGLE 1, DUP and RAID1 2, RAID1C3 3,
 * RAID1C4 4, RAID0 1, RAID10 `sub_stripes` (2), RAID5/6 1 (the data without parity). Refuses a chunk
 * whose stripe count its profile cannot have.
 */
export function chunkCopies(logical: bigint, c: BtrfsChunk): CopyLayout[] {
  const profile = c.type & BTRFS_BLOCK_GROUP_PROFILE_MASK;
  const n = c.stripes.length;
  const bad = (why: string): never => {
    throw new ImageError('IMAGE_BAD_CHUNK', `chunk at logical ${logical}: ${why}`, { offset: logical, command: 'btrfs_chunk' });
  };
  // the kernel's tree checker takes no other (btrfs_check_chunk_valid): a crafted one could make a read of
  // a block thousands of reads
  if (c.stripe_len !== BTRFS_STRIPE_LEN) bad(`stripe_len ${c.stripe_len}, not ${BTRFS_STRIPE_LEN}`);
  const linear = (): CopyLayout[] => c.stripes.map((s) => ({ members: [{ devid: s.devid, offset: s.offset }], stripeLen: c.stripe_len, dataStripes: 1, rotate: false }));
  const striped = (members: BtrfsChunk['stripes'], dataStripes: number, rotate: boolean): CopyLayout =>
    ({ members: members.map((s) => ({ devid: s.devid, offset: s.offset })), stripeLen: c.stripe_len, dataStripes, rotate });
  const stripes = (min: number, max = min): void => {
    if (n < min || n > max) bad(`${n} stripes for profile 0x${profile.toString(16)}`);
  };
  switch (profile) {
    case 0n: stripes(1); return linear();
    case BTRFS_BLOCK_GROUP_DUP: stripes(2); return linear();
    case BTRFS_BLOCK_GROUP_RAID1: stripes(2); return linear();
    case BTRFS_BLOCK_GROUP_RAID1C3: stripes(3); return linear();
    case BTRFS_BLOCK_GROUP_RAID1C4: stripes(4); return linear();
    case BTRFS_BLOCK_GROUP_RAID0: stripes(1, Infinity); return [striped(c.stripes, n, false)];
    case BTRFS_BLOCK_GROUP_RAID10: {
      const sub = c.sub_stripes;
      if (sub < 2 || n < sub || n % sub !== 0) bad(`${n} stripes, sub_stripes ${sub} for RAID10`);
      // stripe i*sub + k holds mirror k of the i-th stripe of the row
      return Array.from({ length: sub }, (_, k) => striped(c.stripes.filter((_, i) => i % sub === k), n / sub, false));
    }
    case BTRFS_BLOCK_GROUP_RAID5: stripes(2, Infinity); return [striped(c.stripes, n - 1, true)];
    case BTRFS_BLOCK_GROUP_RAID6: stripes(3, Infinity); return [striped(c.stripes, n - 2, true)];
    default: return bad(`profile flags 0x${profile.toString(16)}`);
  }
}
