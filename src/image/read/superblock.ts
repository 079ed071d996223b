import { ImageError } from '../../errors.js';
import {
  BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2, BTRFS_FEATURE_INCOMPAT_METADATA_UUID,
  BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE, BTRFS_FEATURE_INCOMPAT_ZONED, BTRFS_MAGIC, BTRFS_SUPER_INFO_SIZE,
  BTRFS_SUPER_MIRROR_MAX, type BtrfsSuperBlock, btrfsSbOffset, csumSizeOf, decodeSuperblock, loadCsum, verifyBlockCsum,
} from '../structs.js';
import type { ImageSource } from './source.js';

/** Incompat features whose on-disk layout this reader does not understand. */
const UNSUPPORTED_INCOMPAT: [bigint, string][] = [
  [BTRFS_FEATURE_INCOMPAT_ZONED, 'zoned'],
  [BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2, 'extent-tree-v2'],
  [BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE, 'raid-stripe-tree'],
];

/** Why one superblock copy is unusable, or null when it is fine. */
async function checkSuper(raw: Uint8Array, at: bigint): Promise<string | null> {
  const sb = decodeSuperblock(raw);
  if (sb.magic !== BTRFS_MAGIC) return 'bad magic (not a btrfs image?)';
  if (csumSizeOf(sb.csum_type) === undefined) return `csum_type ${sb.csum_type} unknown (not crc32c, xxhash, sha256 or blake2)`;
  await loadCsum(sb.csum_type);
  if (!verifyBlockCsum(raw, sb.csum_type)) return 'checksum mismatch';
  if (sb.bytenr !== at) return `bytenr field ${sb.bytenr} does not match its location`;
  const pow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
  if (!pow2(sb.sectorsize) || sb.sectorsize < 4096 || sb.sectorsize > 65536) return `bad sectorsize ${sb.sectorsize}`;
  if (!pow2(sb.nodesize) || sb.nodesize < sb.sectorsize || sb.nodesize > 65536) return `bad nodesize ${sb.nodesize}`;
  if (sb.sys_chunk_array_size > 2048) return `bad sys_chunk_array_size ${sb.sys_chunk_array_size}`;
  return null;
}

/**
 * Picks the superblock: the primary when valid, otherwise the valid mirror with the highest generation.
 * Every failure is reported together so a damaged image says what is wrong with each copy.
 */
export async function readSuperblock(src: ImageSource): Promise<BtrfsSuperBlock> {
  const problems: string[] = [];
  let best: BtrfsSuperBlock | undefined;
  const size = src.size?.();
  for (let i = 0; i < BTRFS_SUPER_MIRROR_MAX; i++) {
    const at = btrfsSbOffset(i);
    if (size !== undefined && at + BigInt(BTRFS_SUPER_INFO_SIZE) > size) break;
    const raw = await src.read(at, BTRFS_SUPER_INFO_SIZE);
    const why = await checkSuper(raw, at);
    if (why) {
      problems.push(`superblock at ${at}: ${why}`);
      continue;
    }
    const sb = decodeSuperblock(raw);
    if (i === 0) {
      best = sb;
      break;
    }
    if (!best || sb.generation > best.generation) best = sb;
  }
  if (!best) {
    throw new ImageError('IMAGE_NO_SUPERBLOCK', `no valid superblock: ${problems.join('; ') || 'image too small'}`, { offset: btrfsSbOffset(0), command: 'btrfs_super_block' });
  }
  for (const [bit, name] of UNSUPPORTED_INCOMPAT) {
    if (best.incompat_flags & bit) throw new ImageError('IMAGE_UNSUPPORTED_FEATURE', `image uses the ${name} feature, which this reader does not support`);
  }
  if (best.num_devices !== 1n) {
    throw new ImageError('IMAGE_MULTI_DEVICE', `filesystem has ${best.num_devices} devices; only single-device images are supported`);
  }
  return best;
}

/** The fsid every tree block header must carry (metadata_uuid when that feature is on). */
export function metadataFsid(sb: BtrfsSuperBlock): Uint8Array {
  return sb.incompat_flags & BTRFS_FEATURE_INCOMPAT_METADATA_UUID ? sb.metadata_uuid : sb.fsid;
}
