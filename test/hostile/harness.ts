/**
 * Shared oracles of the hostile-input, fault and fuzz tests: what an image holds (as the image reader
 * sees it, plus the superblocks), whether btrfs check accepts it, and running `btrfs-ts receive`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { BtrfsImage } from '../../src/image/read/index.js';
import { imageTreeSource } from '../../src/image/read/tree-source.js';
import { openImageFile } from '../../src/io/image-read-file.js';
import { formatManifest } from '../../src/manifest/format.js';
import { btrfsCheck, checkProblems } from '../image-write-helpers.js';

export const ROOT = join(__dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'btrfs-ts.js');
export const STREAMS = join(ROOT, 'streams');
export const HOSTILE_DIR = __dirname;

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  stdout: string;
}

export function receiveCli(image: string, stream: string, args: string[] = [], timeoutMs = 60_000): CliResult {
  const r = spawnSync('node', [BIN, 'receive', '-q', ...args, '-f', stream, image], { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, signal: r.signal, stderr: r.stderr, stdout: r.stdout };
}

/** A sparse copy (images are 256 MiB files holding a few MiB). */
export function copyImage(from: string, to: string): void {
  execFileSync('cp', ['--sparse=always', from, to]);
}

function readAt(path: string, offset: number, len: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/**
 * Everything an image holds that a user can see, as text: both superblock copies (bytes: generation,
 * tree roots, checksums), the subvolume list with uuids and transids, and the manifest of every
 * subvolume (names, types, modes, owners, times, xattrs, file content hashes). Data written to free
 * space by a failed receive is not part of it — the committed state never refers to that space.
 */
export async function imageState(path: string): Promise<string[]> {
  const out = [
    `super@64K ${readAt(path, 0x10000, 4096).toString('hex')}`,
    `super@64M ${readAt(path, 0x4000000, 4096).toString('hex')}`,
  ];
  const src = await openImageFile(path);
  try {
    const img = await BtrfsImage.open(src);
    out.push(`generation ${img.superblock.generation}`);
    const subs = await img.listSubvolumes();
    for (const s of subs) {
      out.push(`subvol ${s.id} ${s.path} uuid=${hex(s.uuid)} received=${hex(s.receivedUuid)} parent=${hex(s.parentUuid)} ctransid=${s.ctransid} stransid=${s.stransid} flags=${s.flags}`);
    }
    for (const s of [{ path: '<top>', id: 5n }, ...subs]) {
      const start = s.id === 5n ? await img.root() : await img.resolve(s.path);
      for await (const line of formatManifest(imageTreeSource(img, start))) out.push(`${s.path}: ${line}`);
    }
  } finally {
    await src.close();
  }
  return out;
}

export async function subvolumeNames(path: string): Promise<string[]> {
  const src = await openImageFile(path);
  try {
    const img = await BtrfsImage.open(src);
    return (await img.listSubvolumes()).map((s) => s.path).sort();
  } finally {
    await src.close();
  }
}

const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex');

/** `btrfs check` problems of an image; [] when clean (exit 0, no warning lines). */
export function checkImage(path: string): string[] {
  const r = btrfsCheck(path);
  const problems = checkProblems(r.output);
  if (r.status !== 0 && problems.length === 0) problems.push(`btrfs check exit ${r.status}: ${r.output.slice(0, 400)}`);
  return problems;
}

/**
 * The CLI's one-line error: `btrfs-ts: ERROR: at byte N, command #i, NAME, path "P": message [code]`.
 * Fields the expectation leaves out may be present (parse errors name a structure, not a path).
 */
export function errorLine(e: { code: string; offset?: number; commandIndex?: number; command?: string; path?: string }): RegExp {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const field = (v: string | undefined, any: string) => (v === undefined ? `(?:, ${any})?` : `, ${esc(v)}`);
  const rest = field(e.commandIndex === undefined ? undefined : `command #${e.commandIndex}`, 'command #\\d+') +
    field(e.command, '[^,:]+') + field(e.path === undefined ? undefined : `path ${JSON.stringify(e.path)}`, 'path "[^"]*"');
  // without an expected offset the whole location may be missing (errors outside any command)
  const where = e.offset === undefined ? `(?:at byte \\d+${rest}: )?` : `at byte ${e.offset}${rest}: `;
  return new RegExp(`^btrfs-ts: ERROR: ${where}.*\\[${esc(e.code)}\\]\\n$`);
}

/**
 * The image's content per subvolume: for each subvolume path, its identity (received uuid, parent uuid,
 * transids, flags — not its own uuid, which is random per receive) and its manifest. Two receives of the
 * same stream give equal entries, so "this subvolume is complete" is `entry === reference entry`.
 */
export async function stateBySubvol(path: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const src = await openImageFile(path);
  try {
    const img = await BtrfsImage.open(src);
    for (const s of await img.listSubvolumes()) {
      // the top level is not received into (its directory gains entries and times when subvolumes come)
      if (s.id === 5n) continue;
      const lines = [`received=${hex(s.receivedUuid)} parent=${hex(s.parentUuid)} ctransid=${s.ctransid} stransid=${s.stransid} flags=${s.flags}`];
      for await (const line of formatManifest(imageTreeSource(img, await img.resolve(s.path)))) lines.push(line);
      out.set(s.path, lines.join('\n'));
    }
  } finally {
    await src.close();
  }
  return out;
}

/**
 * Which of the allowed outcomes an image shows: every subvolume it has must equal the one in `complete`
 * (the image after an uninterrupted receive), every subvolume of `before` must be there. Returns the
 * names of the subvolumes added, or throws naming the half-received one.
 */
export function outcome(state: Map<string, string>, before: Map<string, string>, complete: Map<string, string>): string[] {
  for (const k of before.keys()) if (!state.has(k)) throw new Error(`subvolume ${k} of the image before is gone`);
  const added: string[] = [];
  for (const [k, v] of state) {
    const want = before.get(k) ?? complete.get(k);
    if (want === undefined) throw new Error(`subvolume ${k} is neither in the image before nor in the complete receive`);
    if (v !== want) throw new Error(`subvolume ${k} is half received:\n${v.slice(0, 2000)}\n--- expected ---\n${want.slice(0, 2000)}`);
    if (!before.has(k)) added.push(k);
  }
  return added.sort();
}

/** Opens an image file with the reader for the duration of `fn`. */
export async function withImage<T>(image: string, fn: (img: BtrfsImage) => Promise<T>): Promise<T> {
  const src = await openImageFile(image);
  try {
    return await fn(await BtrfsImage.open(src));
  } finally {
    await src.close();
  }
}
