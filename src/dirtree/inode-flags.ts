import * as fs from 'node:fs';
import path from 'node:path';
import { ImageError } from '../errors.js';
import { BTRFS_INODE_NODATACOW, BTRFS_INODE_NODATASUM } from '../image/structs/constants.js';

/**
 * mkfs --inode-flags FLAGS:PATH (mkfs.btrfs 6.x): inodes of the rootdir that get NODATACOW and/or
 * NODATASUM. Entries are matched by (st_dev, st_ino), as mkfs.btrfs matches them, so every name of a hard
 * linked file gets them. New inodes inherit NODATACOW from their directory (and with it NODATASUM when they
 * are regular files), as the kernel's btrfs_inherit_iflags does; NODATASUM alone is not inherited, and a
 * subvolume's top directory inherits nothing.
 */
export interface InodeFlagSpec {
  nodatacow: boolean;
  nodatasum: boolean;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

/** Parses and checks every FLAGS:PATH against the rootdir; the map is keyed `${dev}:${ino}`. */
export function parseInodeFlags(specs: string[], rootdir: string | undefined): Map<string, InodeFlagSpec> {
  const out = new Map<string, InodeFlagSpec>();
  if (specs.length && !rootdir) throw new ImageError('MKFS_USAGE', '--inode-flags needs --rootdir');
  for (const spec of specs) {
    const colon = spec.indexOf(':');
    if (colon < 0) throw new ImageError('MKFS_USAGE', `--inode-flags ${spec}: expected FLAGS:PATH`);
    const flags: InodeFlagSpec = { nodatacow: false, nodatasum: false };
    for (const f of spec.slice(0, colon).split(',')) {
      if (f === 'nodatacow') flags.nodatacow = true;
      else if (f === 'nodatasum') flags.nodatasum = true;
      else throw new ImageError('MKFS_USAGE', `--inode-flags ${spec}: unknown flag ${JSON.stringify(f)} (nodatacow, nodatasum)`);
    }
    const rel = spec.slice(colon + 1);
    const abs = path.resolve(rootdir!, rel);
    const inside = path.relative(path.resolve(rootdir!), abs);
    if (inside.startsWith('..') || path.isAbsolute(inside)) throw new ImageError('MKFS_USAGE', `--inode-flags ${spec}: ${rel} is outside --rootdir`);
    let st: fs.BigIntStats;
    try {
      st = fs.lstatSync(abs, { bigint: true });
    } catch {
      throw new ImageError('MKFS_USAGE', `--inode-flags ${spec}: ${abs} does not exist`);
    }
    const key = `${st.dev}:${st.ino}`;
    if (out.has(key)) throw new ImageError('MKFS_USAGE', `--inode-flags ${spec}: ${abs} is given twice (an inode takes one set of flags)`);
    out.set(key, flags);
  }
  return out;
}

/** The flags of a new inode: its own (`spec`) over what it inherits from its directory (`parent`). */
export function inodeFlags(mode: number, spec: InodeFlagSpec | undefined, parent: bigint): bigint {
  const regular = (mode & S_IFMT) === S_IFREG;
  let flags = 0n;
  if (parent & BTRFS_INODE_NODATACOW) flags |= regular ? BTRFS_INODE_NODATACOW | BTRFS_INODE_NODATASUM : BTRFS_INODE_NODATACOW;
  if (spec?.nodatacow) flags |= regular ? BTRFS_INODE_NODATACOW | BTRFS_INODE_NODATASUM : BTRFS_INODE_NODATACOW;
  if (spec?.nodatasum) flags |= BTRFS_INODE_NODATASUM;
  return flags;
}
