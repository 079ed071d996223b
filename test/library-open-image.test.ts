import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index.js';
import { STREAMS_DIR, storedManifest } from './helpers/streams.js';

/**
 * openImage: an image file read by path, checked against the kernel's own manifest of the tree the stream
 * came from (streams/full-v1.manifest, captured from a kernel receive).
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-open-image-'));
const image = join(work, 'full.img');
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(async () => {
  const dev = lib.FileDevice.create(image, 256n << 20n);
  try {
    await lib.receiveStreams(createReadStream(join(STREAMS_DIR, 'full-v1.stream')), lib.createFilesystem(dev, { growable: true }));
  } finally {
    dev.close();
  }
});

interface Line { path: string; type: string; fields: Map<string, string> }

/** Manifest lines whose path needs no escaping (the rest are reached by bytes below). */
function plainLines(): Line[] {
  return storedManifest('full-v1.manifest').filter((l) => l !== '').map((l) => {
    const [path, type, ...rest] = l.split(' ');
    return { path: path!, type: type!, fields: new Map(rest.map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)])) };
  }).filter((l) => !l.path.includes('\\'));
}

const MANIFEST_TYPE: Record<string, string> = { file: 'file', dir: 'directory', symlink: 'symlink', fifo: 'fifo', sock: 'socket', chr: 'char', blk: 'block' };

describe('openImage(path): readdir, stat, readFile, readlink, walk, close', () => {
  it('every entry of the kernel\'s manifest: type, mode, owner, size, mtime, content hash or target', async () => {
    await using img = await lib.openImage(image);
    const lines = plainLines();
    expect(lines.length).toBeGreaterThan(60);
    for (const l of lines) {
      const path = l.path === '.' ? 'full' : `full/${l.path}`;
      const st = await img.stat(path);
      expect((st.mode & 0o7777).toString(8).padStart(4, '0'), path).toBe(l.fields.get('mode'));
      expect(String(st.uid), path).toBe(l.fields.get('uid'));
      expect(String(st.gid), path).toBe(l.fields.get('gid'));
      const [sec, nsec] = l.fields.get('mtime')!.split('.');
      expect(st.mtimeNs, path).toBe(BigInt(sec!) * 1_000_000_000n + BigInt(nsec!));
      expect(st.mtime.getTime(), path).toBe(Number(sec) * 1000 + Math.floor(Number(nsec) / 1e6));
      if (l.fields.has('size')) expect(String(st.size), path).toBe(l.fields.get('size'));
      if (l.type === 'file') {
        expect(st.isFile()).toBe(true);
        expect(createHash('sha256').update(await img.readFile(path)).digest('hex'), path).toBe(l.fields.get('sha256'));
      }
      if (l.type === 'symlink') {
        expect(st.isSymbolicLink()).toBe(true);
        expect(await img.readlink(path), path).toBe(l.fields.get('target'));
      }
      if (l.type === 'dir') expect(st.isDirectory()).toBe(true);
    }
  });

  it('readdir names and types as the manifest has them; walk visits every entry once, by bytes too', async () => {
    const img = await lib.openImage(image);
    try {
      const top = await img.readdir('');
      expect(top).toEqual([{ name: 'full', nameBytes: expect.any(Uint8Array), type: 'directory', subvolume: 256n }]);
      const lines = storedManifest('full-v1.manifest').filter((l) => l !== '');
      const inRoot = plainLines().filter((l) => l.path !== '.' && !l.path.includes('/'));
      const entries = await img.readdir('full');
      for (const l of inRoot) expect(entries.find((e) => e.name === l.path)?.type, l.path).toBe(MANIFEST_TYPE[l.type]);
      let n = 0;
      for await (const e of img.walk('full')) {
        n++;
        // a path that is not UTF-8 (names/caf\351) is reached by its bytes
        const full = Buffer.concat([Buffer.from('full/'), e.pathBytes]);
        expect((await img.stat(full)).ino).toBe(e.stat.ino);
      }
      expect(n).toBe(lines.length);
    } finally {
      await img.close();
      await img.close(); // twice is harmless
    }
  });

  it('a missing path and a file that is not a btrfs image: one error, with a code', async () => {
    await using img = await lib.openImage(image);
    await expect(img.stat('full/no-such-file')).rejects.toBeInstanceOf(lib.BtrfsTsError);
    await expect(lib.openImage(join(STREAMS_DIR, 'full-v1.manifest'))).rejects.toBeInstanceOf(lib.BtrfsTsError);
    await expect(lib.openImage(join(work, 'missing.img'))).rejects.toThrow(/missing\.img/);
  });
});
