import { describe, expect, it } from 'vitest';
import { BtrfsTsError } from '../src/errors.js';
import { MemoryDevice } from '../src/image/device.js';
import { BTRFS_INODE_ITEM_KEY } from '../src/image/structs/constants.js';
import { decodeInodeItem, formatKey } from '../src/image/structs/fs-items.js';
import { createFilesystem } from '../src/image/write/create.js';
import { ImageReceiver } from '../src/receive/index.js';
import { dispatch } from '../src/stream/receiver.js';
import type { SendCommand } from '../src/stream/types.js';
import { b } from './helpers/craft.js';

/**
 * A new inode's first name is written only when the command after its MK* is not the RENAME of it
 * (image-receiver.ts, names.ts placeCreated). Whatever the commands, the subvolume's items must be the
 * ones the plain path writes — the create linking its name at once, the rename moving it — which a
 * flush after every command forces. Times are "now" on both sides and left out.
 */
const SUBVOL: SendCommand = { cmd: 1, path: b('vol'), uuid: new Uint8Array(16).fill(7), ctransid: 3n };
const MKFILE = (p: string): SendCommand => ({ cmd: 3, path: b(p), ino: 0n });
const MKDIR = (p: string): SendCommand => ({ cmd: 4, path: b(p), ino: 0n });
const RENAME = (p: string, to: string): SendCommand => ({ cmd: 9, path: b(p), pathTo: b(to) });
const WRITE = (p: string, s: string): SendCommand => ({ cmd: 15, path: b(p), fileOffset: 0n, data: b(s) });

async function receive(cmds: SendCommand[], flushEach: boolean): Promise<{ items: string[]; error?: string }> {
  const fs = createFilesystem(new MemoryDevice(256n << 20n));
  const rcv = new ImageReceiver(fs);
  let error: string | undefined;
  try {
    for (const c of [SUBVOL, ...cmds]) {
      const p = dispatch(rcv, { ...c, meta: { offset: 0, len: 0, index: 0 } } as Parameters<typeof dispatch>[1]);
      if (p instanceof Promise) await p;
      if (flushEach) rcv.flush();
    }
  } catch (e) {
    if (!(e instanceof BtrfsTsError)) throw e;
    error = e.code;
  }
  rcv.flush();
  const items = fs.tree(256n).range().map((it) => {
    if (it.key.type !== BTRFS_INODE_ITEM_KEY) return `${formatKey(it.key)} ${Buffer.from(it.data).toString('hex')}`;
    const { atime, ctime, mtime, otime, ...rest } = decodeInodeItem(it.data);
    return `${formatKey(it.key)} ${JSON.stringify(rest, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`;
  });
  return error === undefined ? { items } : { items, error };
}

const cases: Record<string, SendCommand[]> = {
  'orphans moved into place, as a full send makes them': [
    MKDIR('o257-7-0'), RENAME('o257-7-0', 'd'), MKFILE('o258-7-0'), RENAME('o258-7-0', 'd/f'), WRITE('d/f', 'data'),
    MKFILE('o259-7-0'), RENAME('o259-7-0', 'g'), MKFILE('o260-7-0'), WRITE('o260-7-0', 'x'), RENAME('o260-7-0', 'd/h'),
  ],
  'a create not followed by its rename, and a rename of another name': [
    MKFILE('a'), MKFILE('b'), RENAME('a', 'c'), MKDIR('o1'), RENAME('b', 'o1/b'), RENAME('o1', 'e'),
  ],
  'a rename over an existing name': [MKFILE('a'), WRITE('a', 'old'), MKFILE('o2'), RENAME('o2', 'a')],
  'a rename to its own name': [MKFILE('o3'), RENAME('o3', 'o3'), MKFILE('o4'), RENAME('o4', 'z')],
  'a directory renamed below itself': [MKDIR('o5'), RENAME('o5', 'o5/x')],
  'a rename to a missing directory': [MKFILE('o6'), RENAME('o6', 'nowhere/x')],
  'the stream ends right after a create': [MKDIR('d'), MKFILE('d/o7')],
};

describe('a new inode gets its final name at once when its rename follows', () => {
  for (const [name, cmds] of Object.entries(cases)) {
    it(name, async () => {
      const direct = await receive(cmds, false);
      const plain = await receive(cmds, true);
      expect(direct).toEqual(plain);
      expect(direct.items.length).toBeGreaterThan(3);
    });
  }

  it('refuses what the plain path refuses', async () => {
    expect((await receive(cases['a directory renamed below itself']!, false)).error).toBe('RENAME_INTO_SELF');
    expect((await receive(cases['a rename to a missing directory']!, false)).error).toBe('PATH_NOT_FOUND');
  });
});
