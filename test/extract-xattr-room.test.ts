import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as C from '../src/stream/constants.js';
import { b, encodeAll, uuid } from './helpers/craft.js';
import { skipReason as announceSkip } from './helpers/oracle.js';
import { canMount, mount, tmpDir } from './image-write-helpers.js';

/**
 * extract-stream into a directory on ext4: ext4 keeps all of a file's xattrs in one 4 KiB block, btrfs
 * each one up to a leaf, so a stream from btrfs can carry xattrs ext4 has no room for (lsetxattr fails
 * with ENOSPC). That is the target filesystem's limit, like EOPNOTSUPP for btrfs.* there: a warning
 * naming the xattr and the file, and the rest of the stream goes on. Before, the extraction stopped at
 * that file with "lsetxattr: No space left on device" and left the rest of the tree out.
 */
const BIN = join(__dirname, '..', 'bin', 'btrfs-ts.js');
const work = tmpDir('btrfs-ts-xattr-room-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const stream = encodeAll(1, [
  { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('vol'), uuid: uuid(7), ctransid: 3n },
  { cmd: C.BTRFS_SEND_C_MKFILE, path: b('crowded'), ino: 257n },
  ...[1, 2, 3].map((i) => ({ cmd: C.BTRFS_SEND_C_SET_XATTR, path: b('crowded'), name: b(`user.big${i}`), data: new Uint8Array(1500).fill(0x40 + i) })),
  { cmd: C.BTRFS_SEND_C_MKFILE, path: b('after'), ino: 258n },
  { cmd: C.BTRFS_SEND_C_WRITE, path: b('after'), fileOffset: 0n, data: b('still here\n') },
  { cmd: C.BTRFS_SEND_C_END },
]);

describe('extract-stream onto a filesystem with less room for xattrs than btrfs', () => {
  const why = !canMount ? 'not root or no loop devices' : spawnSync('mkfs.ext4', ['-V']).status !== 0 ? 'mkfs.ext4 missing' : undefined;
  it.skipIf(why !== undefined)('ext4: the xattr that does not fit is a warning, the rest is extracted', () => {
    const img = join(work, 'ext4.img');
    writeFileSync(img, '');
    truncateSync(img, 32 << 20);
    expect(spawnSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-I', '256', img]).status).toBe(0);
    const m = mount(img);
    try {
      const s = join(work, 'x.stream');
      writeFileSync(s, stream);
      const r = spawnSync('node', [BIN, 'extract-stream', '-f', s, join(m.dir, 'out')], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      // the first two fit beside each other in the block, the third does not
      expect(r.stderr).toMatch(/xattr "user\.big3" on "crowded" not applied: lsetxattr: No space left on device/);
      expect(readFileSync(join(m.dir, 'out', 'vol', 'after'), 'utf8')).toBe('still here\n');
      const got = spawnSync('getfattr', ['-d', '--absolute-names', join(m.dir, 'out', 'vol', 'crowded')], { encoding: 'utf8' }).stdout;
      expect(got).toMatch(/user\.big1=/);
      expect(got).not.toMatch(/user\.big3=/);
    } finally {
      m.umount();
    }
    expect(existsSync(img)).toBe(true);
  });
  if (why !== undefined) it('says why it skips', () => announceSkip('extract-stream onto ext4', why));
});
