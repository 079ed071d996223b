import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StreamError } from '../src/errors.js';
import * as C from '../src/stream/constants.js';
import { parseStream } from '../src/stream/parser.js';
import type { StreamItem } from '../src/stream/types.js';
import { encodeCommand, encodeStreamHeader } from '../src/stream/writer.js';
import { allCommands, b, concat, encodeAll, slicings } from './helpers/craft.js';
import { capturedStreams, collect, STREAMS_DIR } from './helpers/streams.js';

/** A comparable digest of parsed items: offsets, ids and the re-encoded bytes of each command. */
function digest(items: StreamItem[]): string[] {
  return items.map((it) =>
    it.kind === 'header'
      ? `H v${it.version} @${it.offset} #${it.streamIndex}`
      : `C ${it.command.cmd} @${it.command.meta.offset} #${it.command.meta.index} ${Buffer.from(encodeCommand(it.command, it.command.meta.version)).toString('base64')}`,
  );
}

/** Re-serialize everything; with canonical=true the parser's attribute order is dropped (kernel order). */
function reencode(items: StreamItem[], canonical = false): Uint8Array {
  return concat(...items.map((it) => {
    if (it.kind === 'header') return encodeStreamHeader(it.version);
    const c = it.command;
    return encodeCommand(canonical ? { ...c, meta: { ...c.meta, attrOrder: [] } } : c, c.meta.version);
  }));
}

describe('captured streams', () => {
  const files = capturedStreams();
  it('streams/ holds captured streams', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  for (const f of files) {
    describe(f, () => {
      const buf = new Uint8Array(readFileSync(join(STREAMS_DIR, f)));
      it('parses identically whole, byte by byte and in odd slices', async () => {
        const ways = slicings(buf);
        const ref = digest(await collect(parseStream(ways[0]![1])));
        expect(ref[0]).toMatch(/^H v[12] @0 #0$/);
        expect(ref.at(-1)).toMatch(new RegExp(`^C ${C.BTRFS_SEND_C_END} `));
        for (const [, chunks] of ways.slice(1)) expect(digest(await collect(parseStream(chunks)))).toEqual(ref);
      });
      it('writer reproduces the exact bytes, also in the kernel attribute order', async () => {
        const items = await collect(parseStream([buf]));
        expect(Buffer.from(reencode(items)).equals(Buffer.from(buf))).toBe(true);
        expect(Buffer.from(reencode(items, true)).equals(Buffer.from(buf))).toBe(true);
      });
    });
  }
});

describe('crafted streams (all commands of v1..v3)', () => {
  for (const version of [1, 2, 3]) {
    it(`v${version}: every command decodes to what was encoded`, async () => {
      const cmds = allCommands(version);
      const buf = encodeAll(version, cmds);
      for (const [, chunks] of slicings(buf)) {
        const items = await collect(parseStream(chunks));
        expect(items[0]).toEqual({ kind: 'header', version, offset: 0, streamIndex: 0 });
        const got = items.slice(1).map((i) => (i.kind === 'command' ? i.command : undefined));
        expect(got.length).toBe(cmds.length);
        got.forEach((g, i) => {
          const { meta, ...rest } = g!;
          expect(meta.version).toBe(version);
          expect(meta.index).toBe(i);
          expect(rest).toEqual(cmds[i]);
        });
        expect(Buffer.from(reencode(items)).equals(Buffer.from(buf))).toBe(true);
      }
    });
  }

  it('several streams back to back: one header each, offsets absolute, indexes continue', async () => {
    const s1 = encodeAll(1, allCommands(1));
    const s2 = encodeAll(2, allCommands(2));
    const items = await collect(parseStream([concat(s1, s2)]));
    const headers = items.filter((i) => i.kind === 'header');
    expect(headers).toEqual([
      { kind: 'header', version: 1, offset: 0, streamIndex: 0 },
      { kind: 'header', version: 2, offset: s1.length, streamIndex: 1 },
    ]);
    const cmds = items.flatMap((i) => (i.kind === 'command' ? [i.command] : []));
    expect(cmds.map((c) => c.meta.index)).toEqual(cmds.map((_, i) => i));
    const second = cmds.find((c) => c.meta.streamIndex === 1)!;
    expect(second.meta.offset).toBe(s1.length + C.BTRFS_STREAM_HEADER_SIZE);
    expect(second.cmd).toBe(C.BTRFS_SEND_C_SUBVOL);
  });

  it('stopAfterFirstEnd reads only the first stream', async () => {
    const two = concat(encodeAll(1, allCommands(1)), encodeAll(2, allCommands(2)));
    const items = await collect(parseStream([two], { stopAfterFirstEnd: true }));
    expect(items.filter((i) => i.kind === 'header').length).toBe(1);
  });

  it('times before 1970 keep their sign; u64 values keep all 64 bits', async () => {
    const cmds = [
      { cmd: C.BTRFS_SEND_C_SUBVOL, path: b('v'), uuid: new Uint8Array(16), ctransid: (1n << 64n) - 10n },
      { cmd: C.BTRFS_SEND_C_UTIMES, path: b(''), atime: { sec: -1n, nsec: 999999999 }, mtime: { sec: -(1n << 62n), nsec: 0 }, ctime: { sec: 0n, nsec: 0 } },
      { cmd: C.BTRFS_SEND_C_END },
    ] as const;
    const items = await collect(parseStream([encodeAll(1, [...cmds])]));
    const [, sub, ut] = items;
    expect(sub?.kind === 'command' && (sub.command as { ctransid: bigint }).ctransid).toBe((1n << 64n) - 10n);
    expect(ut?.kind === 'command' && (ut.command as { atime: unknown }).atime).toEqual({ sec: -1n, nsec: 999999999 });
  });

  it('the v2 DATA attribute takes the rest of the command; in v1 it has a length', async () => {
    const data = new Uint8Array(70000).fill(1);
    const w = { cmd: C.BTRFS_SEND_C_WRITE, path: b('f'), fileOffset: 0n, data } as const;
    expect(() => encodeCommand(w, 1)).toThrow(StreamError);
    const v2 = encodeCommand(w, 2);
    expect(v2.length).toBe(C.BTRFS_CMD_HEADER_SIZE + 4 + 1 + 4 + 8 + 2 + data.length);
  });
});

describe('attribute tables filled anew per command', () => {
  it('leaves nothing of the previous command: values, order, copies', async () => {
    const t = (sec: bigint) => ({ sec, nsec: 0 });
    const stream = encodeAll(2, [
      { cmd: C.BTRFS_SEND_C_UTIMES, path: b('a'), atime: t(1n), mtime: t(2n), ctime: t(3n), otime: t(4n) },
      { cmd: C.BTRFS_SEND_C_UTIMES, path: b('bb'), atime: t(5n), mtime: t(6n), ctime: t(7n) },
      { cmd: C.BTRFS_SEND_C_END },
    ]);
    const items = await collect(parseStream([stream], { reuseInput: true }));
    const [u1, u2] = items.filter((i) => i.kind === 'command').map((i) => (i as Extract<StreamItem, { kind: 'command' }>).command) as any[];
    expect(u1.otime).toEqual(t(4n));
    expect(u2.otime).toBeUndefined();
    expect(u2.meta.extraAttrs).toBeUndefined();
    expect(u1.meta.attrOrder).toHaveLength(5);
    expect(u2.meta.attrOrder).toHaveLength(4);
    expect(new TextDecoder().decode(u1.path)).toBe('a');
    expect(new TextDecoder().decode(u2.path)).toBe('bb');
  });
});
