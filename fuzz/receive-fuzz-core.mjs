// Mutation fuzzing of `receive`: captured send streams are mutated (bit flips, typed field changes, cuts,
// splices, duplicated/dropped/swapped commands) and RE-ENCODED WITH VALID CRCs, so the mutations get past
// the parser's checks and reach the receiver and the image writer. Each input is received into a scratch
// copy (copy-on-write overlay) of a base image. Invariants checked per iteration:
//   - nothing but a BtrfsTsError escapes (any other exception is a crash);
//   - the iteration ends within a time bound (checked after every command);
//   - when no subvolume was committed, the superblock on the device is byte-for-byte the base's;
//   - the image passes `btrfs check` (when the caller asks for it: after failures / every N iterations).
// Used by fuzz/receive-fuzz.mjs (long runs) and test/hostile-fuzz.test.ts (bounded CI run). Needs `npm run
// build` (it drives dist/, like the CLI).
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { BtrfsTsError } from '../dist/errors.js';
import { MemoryDevice } from '../dist/image/device.js';
import { createFilesystem } from '../dist/image/write/create.js';
import { openFilesystem } from '../dist/image/write/open.js';
import { receiveStreams } from '../dist/receive/index.js';
import { parseStream } from '../dist/stream/parser.js';
import { encodeCommand, encodeStreamHeader } from '../dist/stream/writer.js';
import { crc32cRaw } from '../dist/util/crc32c.js';

export const ROOT = new URL('..', import.meta.url).pathname;
const STREAMS = join(ROOT, 'streams');
const PAGE = 1 << 20;
const te = new TextEncoder();

/** Streams mutated; the base image holds what their parents and clone sources need. */
export const FUZZ_STREAMS = ['sample', 'multi-v1', 'multi-e-v1', 'clones-v1', 'incr-v1', 'incr-zstd-v2', 'zlib-v2', 'lzo-v2', 'nodata-v1'];
const BASE_STREAMS = ['full-v1', 'clone-src-v1', 'zstd-v2'];

/** Deterministic PRNG (mulberry32): an iteration is replayed from (seed, iteration). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A device whose writes go to an overlay: many scratch images share one base in memory. */
export class OverlayDevice {
  constructor(base) {
    this.base = base;
    this.pages = new Map();
    this.bytes = base.size();
    this.writes = 0;
  }
  size() { return this.bytes; }
  flush() {}
  grow(n) { if (n > this.bytes) this.bytes = n; }
  read(offset, len) {
    const out = new Uint8Array(len);
    let pos = Number(offset);
    for (let done = 0; done < len;) {
      const page = Math.floor(pos / PAGE);
      const po = pos % PAGE;
      const n = Math.min(len - done, PAGE - po);
      const p = this.pages.get(page);
      out.set(p ? p.subarray(po, po + n) : this.base.read(BigInt(pos), n), done);
      done += n;
      pos += n;
    }
    return out;
  }
  write(offset, bytes) {
    this.writes++;
    let pos = Number(offset);
    for (let done = 0; done < bytes.length;) {
      const page = Math.floor(pos / PAGE);
      const po = pos % PAGE;
      const n = Math.min(bytes.length - done, PAGE - po);
      let p = this.pages.get(page);
      if (!p) {
        p = this.base.read(BigInt(page * PAGE), PAGE);
        this.pages.set(page, p);
      }
      p.set(bytes.subarray(done, done + n), po);
      done += n;
      pos += n;
    }
    const end = offset + BigInt(bytes.length);
    if (end > this.bytes) this.bytes = end;
  }
  /** Writes the whole device to a sparse file (for btrfs check). */
  saveTo(path) {
    const fd = openSync(path, 'w');
    try {
      ftruncateSync(fd, Number(this.bytes));
      const pages = new Set([...this.pages.keys(), ...this.base.nonZeroPages()]);
      for (const page of pages) {
        const p = this.pages.get(page) ?? this.base.read(BigInt(page * PAGE), PAGE);
        const n = Math.min(PAGE, Number(this.bytes) - page * PAGE);
        if (n > 0) writeSync(fd, p, 0, n, page * PAGE);
      }
    } finally {
      closeSync(fd);
    }
  }
}

class BaseDevice extends MemoryDevice {
  nonZeroPages() {
    if (this.nz && this.nzWrites === this.writes) return this.nz;
    const out = [];
    for (let page = 0; page * PAGE < Number(this.size()); page++) {
      if (this.read(BigInt(page * PAGE), PAGE).some((x) => x !== 0)) out.push(page);
    }
    this.nz = out;
    this.nzWrites = this.writes;
    return out;
  }
}

async function commandsOf(bytes) {
  const out = [];
  let version = 1;
  for await (const it of parseStream([bytes])) {
    if (it.kind === 'header') {
      if (it.streamIndex > 0) break;
      version = it.version;
      continue;
    }
    const c = { ...it.command };
    // views into the parser's buffer: copy what we keep
    for (const k of Object.keys(c)) if (c[k] instanceof Uint8Array) c[k] = c[k].slice();
    delete c.meta;
    // subvolume names of their own, so no stream collides with one of the base image
    if (c.cmd === 1 || c.cmd === 2) c.path = te.encode(`${new TextDecoder().decode(c.path)}-fz`);
    out.push(c);
  }
  return { version, cmds: out };
}

/** The base image (receives BASE_STREAMS) and the parsed corpus. */
export async function setup() {
  const base = new BaseDevice(256n << 20n);
  const fs = createFilesystem(base, { growable: true, maxSize: 2n << 30n });
  for (const s of BASE_STREAMS) await receiveStreams([new Uint8Array(readFileSync(join(STREAMS, `${s}.stream`)))], fs);
  const corpus = [];
  for (const name of FUZZ_STREAMS) corpus.push({ name, ...(await commandsOf(new Uint8Array(readFileSync(join(STREAMS, `${name}.stream`))))) });
  const superblock = base.read(0x10000n, 4096);
  return { base, corpus, superblock };
}

const pick = (r, a) => a[Math.floor(r() * a.length)];
const INTERESTING = [0n, 1n, 4095n, 4096n, 4097n, 65536n, 131072n, (1n << 32n) - 1n, 1n << 32n, (1n << 62n), (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n];

function mutateValue(r, v, paths, uuids) {
  if (typeof v === 'bigint') {
    const k = r();
    if (k < 0.4) return pick(r, INTERESTING);
    if (k < 0.7) return BigInt.asUintN(64, v + BigInt(Math.floor((r() - 0.5) * 16384)));
    return BigInt.asUintN(64, v ^ (1n << BigInt(Math.floor(r() * 64))));
  }
  if (typeof v === 'number') return pick(r, [0, 1, 2, 3, 7, 8, 0xff, 0x10, v ^ (1 << Math.floor(r() * 8))]);
  if (v instanceof Uint8Array) {
    if (v.length === 16 && r() < 0.6) return pick(r, uuids);
    const k = r();
    if (k < 0.3 && paths.length) return pick(r, paths);
    if (k < 0.45) return te.encode(pick(r, ['..', '../x', '/etc/passwd', '', 'a//b', '.', 'x'.repeat(256), 'a\0b', 'dir/../..']));
    if (k < 0.6) return v.subarray(0, Math.floor(r() * v.length));
    if (k < 0.65) return Uint8Array.from([...v, ...v]);
    if (k < 0.72) {
      // far longer than any sender makes (names, link targets, xattr values near their limits)
      const n = pick(r, [255, 256, 4095, 4096, 16_220, 16_300, 65_535]);
      return Uint8Array.from({ length: n }, (_, i) => v[i % Math.max(1, v.length)] ?? 0x61);
    }
    const out = v.slice();
    if (out.length) out[Math.floor(r() * out.length)] ^= 1 << Math.floor(r() * 8);
    return out;
  }
  if (v && typeof v === 'object' && 'sec' in v) {
    return r() < 0.5 ? { ...v, nsec: pick(r, [999_999_999, 1_000_000_000, 1073741822, 1073741823, 0xffffffff]) } : { ...v, sec: BigInt.asIntN(64, mutateValue(r, BigInt.asUintN(64, v.sec), paths, uuids)) };
  }
  return v;
}

/** Encodes one command, then flips a bit of its payload and puts a correct CRC back. */
function flipEncoded(r, c, version) {
  const b = encodeCommand(c, version).slice();
  if (b.length > 10) {
    const i = 10 + Math.floor(r() * (b.length - 10));
    b[i] ^= 1 << Math.floor(r() * 8);
    b.fill(0, 6, 10);
    new DataView(b.buffer).setUint32(6, crc32cRaw(b), true);
  }
  return b;
}

/**
 * One mutated input: a list of byte chunks (a valid header, re-encoded commands) and a description of
 * what was done, for the report.
 */
export function mutate(corpus, r) {
  const s = pick(r, corpus);
  const version = s.version;
  let cmds = s.cmds.slice();
  const paths = cmds.filter((c) => c.path instanceof Uint8Array).map((c) => c.path);
  const uuids = [...cmds.filter((c) => c.uuid).map((c) => c.uuid), ...cmds.filter((c) => c.cloneUuid).map((c) => c.cloneUuid), new Uint8Array(16).fill(0xee)];
  const ops = [];
  const flips = new Map();
  const rounds = 1 + Math.floor(r() * 3);
  for (let i = 0; i < rounds; i++) {
    const k = r();
    const at = Math.floor(r() * cmds.length);
    if (!cmds.length) break;
    if (k < 0.35) {
      const c = { ...cmds[at] };
      const fields = Object.keys(c).filter((f) => f !== 'cmd');
      if (!fields.length) continue;
      const f = pick(r, fields);
      c[f] = mutateValue(r, c[f], paths, uuids);
      cmds[at] = c;
      ops.push(`field ${f} of #${at}`);
    } else if (k < 0.45) {
      flips.set(at, true);
      ops.push(`flip in #${at}`);
    } else if (k < 0.55) {
      const o = pick(r, corpus);
      if (o.version > version) continue;
      const from = Math.floor(r() * o.cmds.length);
      const n = 1 + Math.floor(r() * 8);
      cmds.splice(at, 0, ...o.cmds.slice(from, from + n));
      ops.push(`splice ${n} from ${o.name}#${from} at #${at}`);
    } else if (k < 0.7) {
      const n = 1 + Math.floor(r() * 4);
      cmds.splice(at, 0, ...cmds.slice(at, at + n));
      ops.push(`duplicate ${n} at #${at}`);
    } else if (k < 0.85) {
      const n = 1 + Math.floor(r() * 4);
      cmds.splice(at, n);
      ops.push(`drop ${n} at #${at}`);
    } else if (k < 0.95) {
      const b = Math.floor(r() * cmds.length);
      [cmds[at], cmds[b]] = [cmds[b], cmds[at]];
      ops.push(`swap #${at} #${b}`);
    } else {
      cmds = cmds.slice(0, at);
      ops.push(`cut at #${at}`);
    }
  }
  cmds = cmds.filter((c) => c !== undefined);
  const chunks = [encodeStreamHeader(version)];
  for (let i = 0; i < cmds.length; i++) {
    try {
      chunks.push(flips.has(i) ? flipEncoded(r, cmds[i], version) : encodeCommand(cmds[i], version));
    } catch (e) {
      // a mutated value the writer cannot encode (over 64 KiB in a v1 TLV): keep the original
      if (!(e instanceof BtrfsTsError)) throw e;
      chunks.push(encodeCommand(s.cmds[Math.min(i, s.cmds.length - 1)], version));
    }
  }
  // a byte-level cut now and then (inside a header, an attribute, the data)
  if (r() < 0.08) {
    const all = Buffer.concat(chunks.map((c) => Buffer.from(c)));
    const cut = Math.floor(r() * all.length);
    ops.push(`byte cut at ${cut}`);
    return { name: s.name, ops, chunks: [new Uint8Array(all.subarray(0, cut))] };
  }
  return { name: s.name, ops, chunks };
}

/**
 * Receives one input into a scratch overlay of the base image. Returns the outcome; `problem` is set
 * when an invariant broke (a crash, a time bound, a superblock written without a commit).
 */
export async function runOne(env, input, { timeLimitMs = 10_000, options = {} } = {}) {
  const dev = new OverlayDevice(env.base);
  const fs = await openFilesystem(dev, { growable: true, maxSize: 4n << 30n });
  const t0 = Date.now();
  let commits = 0;
  const res = { ok: false, dev, ms: 0 };
  try {
    await receiveStreams(input.chunks, fs, {
      ...options,
      onSubvolumeDone: () => { commits++; },
      afterCommand: () => {
        if (Date.now() - t0 > timeLimitMs) throw new Error(`time bound: still running after ${timeLimitMs} ms`);
      },
    });
    res.ok = true;
  } catch (e) {
    res.error = e;
    if (!(e instanceof BtrfsTsError)) res.problem = `crash: ${e?.stack ?? e}`;
    else if (!e.describe().startsWith('at byte') && !['IMAGE_FULL'].includes(e.code)) res.problem = `error without a location: ${e.describe()}`;
  }
  res.ms = Date.now() - t0;
  res.commits = commits;
  if (!res.problem && commits === 0 && !Buffer.from(dev.read(0x10000n, 4096)).equals(Buffer.from(env.superblock))) {
    res.problem = 'the superblock changed although nothing was committed';
  }
  return res;
}

/** btrfs check of a scratch image: [] when clean. */
export function checkDevice(dev, path) {
  dev.saveTo(path);
  const r = spawnSync('btrfs', ['check', '--readonly', path], { encoding: 'utf8' });
  const out = `${r.stdout}\n${r.stderr}`;
  const problems = out.split('\n').filter((l) => /warn|error|wrong|mismatch|missing|corrupt|invalid|unresolved|fail/i.test(l) && !/no error found/.test(l));
  if (r.status !== 0 && !problems.length) problems.push(`btrfs check exit ${r.status}`);
  return problems;
}

/** The mutated input as one buffer (to save a finding as a fixture). */
export function inputBytes(input) {
  return Buffer.concat(input.chunks.map((c) => Buffer.from(c)));
}
