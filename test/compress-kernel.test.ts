// Oracle: the running kernel. Our compressExtent output is stored with BTRFS_IOC_ENCODED_WRITE (the
// same path `btrfs receive` uses for ENCODED_WRITE), then read back through the page cache after a
// remount — the kernel's own decompressors must return the original bytes — and `btrfs check` must pass.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compressExtent, diskToEncoded, initCodecs, type BtrfsCompressType } from '../src/compress/index.js';

const PY = '/usr/bin/python3';
const why = process.getuid?.() !== 0 ? 'not root'
  : spawnSync('mkfs.btrfs', ['--version'], { stdio: 'ignore' }).error ? 'mkfs.btrfs missing'
  : spawnSync(PY, ['-c', 'import fcntl, ctypes'], { stdio: 'ignore' }).status !== 0 ? `${PY} missing`
  : spawnSync('losetup', ['-f'], { stdio: 'ignore' }).status !== 0 ? 'no free loop device'
  : null;
if (why) console.warn(`SKIP compress-kernel: ${why} (needs root, loop devices, btrfs-progs, ${PY})`);

// struct btrfs_ioctl_encoded_io_args is 128 bytes; BTRFS_IOC_ENCODED_WRITE = _IOW(0x94, 64, args).
const ENCODED_WRITE_PY = `
import sys, os, json, fcntl, ctypes, struct
for job in json.load(open(sys.argv[1])):
    data = open(job['src'], 'rb').read()
    buf = ctypes.create_string_buffer(data, len(data))
    iov = (ctypes.c_uint64 * 2)(ctypes.addressof(buf), len(data))
    args = struct.pack('=QQqQQQQII64s', ctypes.addressof(iov), 1, 0, 0, job['len'], job['ulen'], 0,
                       job['compression'], 0, bytes(64))
    fd = os.open(job['dst'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        fcntl.ioctl(fd, 0x40809440, args)
    finally:
        os.close(fd)
`;

const DIR = join(__dirname, 'fixtures/compress');
const plain = (name: string) => new Uint8Array(gunzipSync(readFileSync(join(DIR, `plain-${name}.gz`))));

interface Case { name: string; type: BtrfsCompressType; level?: number; data: Uint8Array }
function cases(): Case[] {
  const text = plain('text128k');
  const big = plain('big');
  const partial = plain('partial');
  const runs = plain('runs').subarray(0, 100_000);
  const out: Case[] = [];
  for (const [n, d] of [['text', text], ['big2', big.subarray(131072)], ['partial', partial], ['runs', runs]] as const) {
    out.push({ name: `lzo-${n}`, type: 2, data: d });
    out.push({ name: `zlib-${n}`, type: 1, data: d });
    out.push({ name: `zstd-${n}`, type: 3, data: d });
  }
  for (const level of [1, 9]) out.push({ name: `zlib-l${level}`, type: 1, level, data: text });
  for (const level of [1, 15, -5]) out.push({ name: `zstd-l${level}`, type: 3, level, data: text });
  return out;
}

let work = '';
let mnt = '';
let img = '';
let mounted = false;
beforeAll(async () => {
  await initCodecs();
  if (why) return;
  work = mkdtempSync(join(tmpdir(), 'btrfs-ts-compress-kernel-'));
  mnt = join(work, 'mnt');
  img = join(work, 'img');
  mkdirSync(mnt);
  execFileSync('truncate', ['-s', '256M', img]);
  execFileSync('mkfs.btrfs', ['-q', '-f', '-s', '4096', img]);
});
afterAll(() => {
  if (mounted) spawnSync('umount', [mnt]);
  if (work) rmSync(work, { recursive: true, force: true });
});

function mount(): void {
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  mounted = true;
}
function umount(): void {
  execFileSync('umount', [mnt]);
  mounted = false;
}

describe.skipIf(why !== null)('kernel reads what compressExtent writes', () => {
  it('ENCODED_WRITE our extents, remount, read back through the kernel, btrfs check', () => {
    const all = cases();
    const jobs = [];
    for (const c of all) {
      const enc = compressExtent(c.type, c.data, 4096, c.level);
      expect(enc, c.name).not.toBeNull();
      const src = join(work, `${c.name}.enc`);
      writeFileSync(src, enc!);
      jobs.push({ src, dst: join(mnt, c.name), len: c.data.length, ulen: c.data.length, compression: diskToEncoded(c.type, 4096) });
    }
    writeFileSync(join(work, 'jobs.json'), JSON.stringify(jobs));
    mount();
    try {
      execFileSync(PY, ['-c', ENCODED_WRITE_PY, join(work, 'jobs.json')]);
      execFileSync('sync');
    } finally {
      umount();
    }
    mount(); // fresh page cache: reads below go through the kernel's decompressors
    try {
      for (const c of all) {
        const back = readFileSync(join(mnt, c.name));
        expect(back.length, c.name).toBe(c.data.length);
        expect(back.equals(Buffer.from(c.data)), c.name).toBe(true);
      }
    } finally {
      umount();
    }
    const tree = execFileSync('btrfs', ['inspect-internal', 'dump-tree', '-t', '5', img]).toString();
    const counts = [1, 2, 3].map((t) => (tree.match(new RegExp(`extent compression ${t} `, 'g')) ?? []).length);
    expect(counts).toEqual([1, 2, 3].map((t) => all.filter((c) => c.type === t).length));
    const chk = spawnSync('btrfs', ['check', '--readonly', img]);
    expect(chk.status, chk.stderr.toString()).toBe(0);
  });
});
