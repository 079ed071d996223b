import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDevice } from '../src/io/image-file.js';
import { undoPath } from '../src/io/undo-log.js';
import { recoverUndo } from '../src/io/undo-restore.js';

/**
 * The rollback journal: whatever is written after the last commit — over old data, over holes, past the
 * end — is put back byte for byte by rollback(), and by recoverUndo() after a process died (when no commit
 * happened since; a journal older than the superblock's generation is dropped).
 */
const work = mkdtempSync(join(tmpdir(), 'btrfs-ts-undo-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
const SB_GEN = 0x10000 + 0x48;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32);
}

/** An 8 MiB file: holes, random data, a superblock generation. */
function makeImage(name: string, generation: bigint): string {
  const f = join(work, name);
  writeFileSync(f, Buffer.alloc(0));
  const fd = openSync(f, 'r+');
  const r = rng(generation === 0n ? 7 : Number(generation));
  for (let i = 0; i < 40; i++) {
    const b = Buffer.alloc(1 + Math.floor(r() * 70000), Math.floor(r() * 255) + 1);
    writeSync(fd, b, 0, b.length, Math.floor(r() * (8 << 20)));
  }
  const g = Buffer.alloc(8);
  g.writeBigUInt64LE(generation);
  writeSync(fd, g, 0, 8, SB_GEN);
  closeSync(fd);
  return f;
}

function scribble(dev: FileDevice, seed: number, n: number): void {
  const r = rng(seed);
  for (let i = 0; i < n; i++) {
    const len = 1 + Math.floor(r() * 200000);
    // some writes overlap earlier ones, some go past the end (growth)
    const off = Math.floor(r() * (9 << 20));
    const fill = Math.floor(r() * 256);
    // the superblock's generation is what a commit changes: these writes leave it alone
    if (off < SB_GEN + 8 && off + len > SB_GEN) continue;
    dev.write(BigInt(off), Buffer.alloc(len, fill));
  }
}

describe('rollback journal', () => {
  it('rollback puts back old data, holes and the size after overlapping writes and growth', () => {
    const f = makeImage('a.img', 5n);
    const before = sha(f);
    const size = statSync(f).size;
    const dev = FileDevice.open(f);
    dev.startUndo();
    scribble(dev, 11, 60);
    dev.grow(BigInt(20 << 20));
    expect(sha(f)).not.toBe(before);
    dev.rollback();
    dev.close();
    expect(statSync(f).size).toBe(size);
    expect(sha(f)).toBe(before);
    expect(existsSync(undoPath(f))).toBe(false);
  });

  it('a commit is kept: rollback goes back to it, not further', () => {
    const f = makeImage('b.img', 5n);
    const dev = FileDevice.open(f);
    dev.startUndo();
    scribble(dev, 12, 30);
    dev.committed();
    const atCommit = sha(f);
    scribble(dev, 13, 30);
    dev.rollback();
    dev.close();
    expect(sha(f)).toBe(atCommit);
  });

  it('a fresh image: never-written ranges are journaled as holes without reading them, and rolled back', () => {
    const f = join(work, 'c.img');
    const dev = FileDevice.create(f, BigInt(8 << 20));
    dev.startUndo({ fresh: true });
    scribble(dev, 14, 20);
    dev.committed();
    const atCommit = sha(f);
    scribble(dev, 15, 40);
    // the journal holds only the bytes that had been written since the image was made
    expect(statSync(undoPath(f)).size).toBeLessThan(9 << 20);
    dev.rollback();
    dev.close();
    expect(sha(f)).toBe(atCommit);
  });

  it('after a crash (no rollback, no close) the next writer rolls back; a journal older than a commit is dropped', () => {
    const f = makeImage('d.img', 9n);
    const before = sha(f);
    const dev = FileDevice.open(f);
    dev.startUndo();
    scribble(dev, 16, 50);
    // the process "dies" here: the journal stays behind
    expect(existsSync(undoPath(f))).toBe(true);
    expect(recoverUndo(f)).toBe('rolled-back');
    expect(sha(f)).toBe(before);
    expect(recoverUndo(f)).toBe('none');

    const g = makeImage('e.img', 9n);
    const dev2 = FileDevice.open(g);
    dev2.startUndo();
    scribble(dev2, 17, 20);
    // a commit reached the superblock (new generation) but the journal was not emptied yet
    const gen = Buffer.alloc(8);
    gen.writeBigUInt64LE(10n);
    dev2.write(BigInt(SB_GEN), gen);
    const committed = sha(g);
    expect(recoverUndo(g)).toBe('dropped');
    expect(sha(g)).toBe(committed);
    dev.close();
    dev2.close();
  });

  it('a journal whose image was removed after the crash is dropped, not an error', () => {
    const f = makeImage('gone.img', 3n);
    const dev = FileDevice.open(f);
    dev.startUndo();
    scribble(dev, 18, 10);
    // the process "dies" (no rollback, no close), then the user removes the half-written image
    rmSync(f);
    expect(existsSync(undoPath(f))).toBe(true);
    expect(recoverUndo(f)).toBe('dropped');
    expect(existsSync(undoPath(f))).toBe(false);
    expect(existsSync(f)).toBe(false);
    dev.close();
  });
});
