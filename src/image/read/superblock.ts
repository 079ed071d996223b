import { ImageError } from '../../errors.js';
import {
  BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2, BTRFS_FEATURE_INCOMPAT_METADATA_UUID,
  BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE, BTRFS_FEATURE_INCOMPAT_ZONED, BTRFS_MAGIC, BTRFS_SUPER_INFO_SIZE,
  BTRFS_MAX_LEVEL, BTRFS_SUPER_MIRROR_MAX, BTRFS_SYSTEM_CHUNK_ARRAY_SIZE, type BtrfsSuperBlock, btrfsSbOffset, csumSizeOf,
  decodeSuperblock, loadCsum, verifyBlockCsum,
} from '../structs.js';
import type { ImageSource } from './source.js';

/** Incompat features whose on-disk layout this reader does not understand. */
const UNSUPPORTED_INCOMPAT: [bigint, string][] = [
  [BTRFS_FEATURE_INCOMPAT_ZONED, 'zoned'],
  [BTRFS_FEATURE_INCOMPAT_EXTENT_TREE_V2, 'extent-tree-v2'],
  [BTRFS_FEATURE_INCOMPAT_RAID_STRIPE_TREE, 'raid-stripe-tree'],
];

/**
 * Why a decoded superblock describes a filesystem the kernel would not mount (btrfs_validate_super), or
 * null. Only fields whose meaning is fixed by the format: geometry, levels, alignment, sizes.
 */
export function superblockProblem(sb: BtrfsSuperBlock): string | null {
  const pow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
  if (!pow2(sb.sectorsize) || sb.sectorsize < 4096 || sb.sectorsize > 65536) return `bad sectorsize ${sb.sectorsize}`;
  if (!pow2(sb.nodesize) || sb.nodesize < sb.sectorsize || sb.nodesize > 65536) return `bad nodesize ${sb.nodesize}`;
  if (sb.leafsize !== sb.nodesize) return `leafsize ${sb.leafsize} differs from nodesize ${sb.nodesize}`;
  if (sb.stripesize !== sb.sectorsize) return `bad stripesize ${sb.stripesize} (must equal sectorsize ${sb.sectorsize})`;
  for (const [name, level] of [['root_level', sb.root_level], ['chunk_root_level', sb.chunk_root_level], ['log_root_level', sb.log_root_level]] as const) {
    if (level >= BTRFS_MAX_LEVEL) return `${name} ${level} too high`;
  }
  const ss = BigInt(sb.sectorsize);
  for (const [name, at] of [['root', sb.root], ['chunk_root', sb.chunk_root], ['log_root', sb.log_root]] as const) {
    if (at % ss !== 0n) return `${name} ${at} is not sector aligned`;
  }
  if (sb.root === 0n || sb.chunk_root === 0n) return 'no root tree or chunk tree';
  if (sb.num_devices === 0n) return 'num_devices 0';
  if (sb.sys_chunk_array_size > BTRFS_SYSTEM_CHUNK_ARRAY_SIZE || sb.sys_chunk_array_size < 17 + 48 + 32) return `bad sys_chunk_array_size ${sb.sys_chunk_array_size}`;
  if (sb.bytes_used < BigInt(6 * sb.nodesize)) return `bytes_used ${sb.bytes_used} is too small`;
  if (sb.total_bytes < BigInt(sb.nodesize) * 8n) return `total_bytes ${sb.total_bytes} is too small`;
  if (sb.generation < sb.chunk_root_generation) return `chunk_root_generation ${sb.chunk_root_generation} is newer than generation ${sb.generation}`;
  return null;
}

/** Why one superblock copy is unusable, or null when it is fine. */
async function checkSuper(raw: Uint8Array, at: bigint): Promise<string | null> {
  const sb = decodeSuperblock(raw);
  if (sb.magic !== BTRFS_MAGIC) return 'bad magic (not a btrfs image?)';
  if (csumSizeOf(sb.csum_type) === undefined) return `csum_type ${sb.csum_type} unknown (not crc32c, xxhash, sha256 or blake2)`;
  await loadCsum(sb.csum_type);
  if (!verifyBlockCsum(raw, sb.csum_type)) return 'checksum mismatch';
  if (sb.bytenr !== at) return `bytenr field ${sb.bytenr} does not match its location`;
  return superblockProblem(sb);
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
  // num_devices above 1 is judged chunk by chunk (chunk-map.ts): readable when every chunk is on this device
  return best;
}

/** The fsid every tree block header must carry (metadata_uuid when that feature is on). */
export function metadataFsid(sb: BtrfsSuperBlock): Uint8Array {
  return sb.incompat_flags & BTRFS_FEATURE_INCOMPAT_METADATA_UUID ? sb.metadata_uuid : sb.fsid;
}

/** Why the primary superblock (the only one the kernel mounts from) is unusable, or null. */
export async function primarySuperblockProblem(src: ImageSource): Promise<string | null> {
  return checkSuper(await src.read(btrfsSbOffset(0), BTRFS_SUPER_INFO_SIZE), btrfsSbOffset(0));
}
