/**
 * A user who is not root cannot copy what its own modes forbid it to read: a parent subvolume holding a
 * mode-000 file (or a directory without u+rx) makes `cp -a` fail, although root's `btrfs receive` never
 * looks at modes. So the contents go first and the modes after: entries the user owns and cannot read are
 * opened up (u+r, directories u+rx) for the copy, then both the source and the copy get their exact modes
 * back, deepest first (a directory's mode is restored after its children's).
 */
import { constants, promises as fsp } from 'node:fs';
import { throughShortPath as at } from '../io/long-paths.js';

const SLASH = Buffer.from('/');

export interface ModeChange {
  /** Path relative to the walked directory, as raw bytes ('' for the directory itself). */
  rel: Buffer;
  mode: number;
}

/** Opens up what `dir` holds that its owner (us) cannot read; returns the changes, parents first. */
export async function openForCopy(dir: Buffer): Promise<ModeChange[]> {
  const uid = process.getuid?.();
  const changed: ModeChange[] = [];
  if (uid === undefined || uid === 0) return changed;
  const walk = async (rel: Buffer): Promise<void> => {
    const abs = rel.length ? Buffer.concat([dir, SLASH, rel]) : dir;
    const st = await at(abs, (s) => fsp.lstat(s));
    if (st.uid !== uid) return; // not ours: we may not chmod it, cp reports it
    const perm = st.mode & 0o7777;
    if (st.isDirectory()) {
      const need = constants.S_IRUSR | constants.S_IXUSR;
      if ((perm & need) !== need) {
        changed.push({ rel, mode: perm });
        await at(abs, (s) => fsp.chmod(s, perm | need));
      }
      for (const name of await at(abs, (s) => fsp.readdir(s, { encoding: 'buffer' }))) {
        await walk(rel.length ? Buffer.concat([rel, SLASH, name]) : name);
      }
    } else if (st.isFile() && (perm & constants.S_IRUSR) === 0) {
      changed.push({ rel, mode: perm });
      await at(abs, (s) => fsp.chmod(s, perm | constants.S_IRUSR));
    }
  };
  await walk(Buffer.alloc(0));
  return changed;
}

/** Puts the recorded modes back on the tree at `dir` (the source, or a copy of it), children first. */
export async function restoreModes(dir: Buffer, changed: ModeChange[]): Promise<void> {
  for (let i = changed.length - 1; i >= 0; i--) {
    const c = changed[i]!;
    await at(c.rel.length ? Buffer.concat([dir, SLASH, c.rel]) : dir, (s) => fsp.chmod(s, c.mode));
  }
}
