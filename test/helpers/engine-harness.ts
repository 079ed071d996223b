import { MemoryDevice } from '../../src/image/device.js';
import { leafRoom } from '../../src/image/engine/block.js';
import type { BTree } from '../../src/image/engine/ctree.js';
import { BlockStore, type TreeBlockSpace } from '../../src/image/engine/store.js';
import { type BtrfsKey, compareKeys } from '../../src/image/structs/fs-items.js';

/**
 * A BlockStore on a MemoryDevice for engine tests: metadata space is one logical range, kept in two
 * copies (as DUP does) at 1 GiB apart; freed committed blocks stay pinned until commit(), and the space
 * counts what it handed out so a test can find leaked or doubly used blocks.
 */
export const TEST_FSID = new Uint8Array(16).fill(7);
export const TEST_CHUNK_UUID = new Uint8Array(16).fill(9);
const BASE = 1n << 24n;
const MIRROR = 1n << 30n;

export class TestSpace implements TreeBlockSpace {
  readonly inUse = new Set<bigint>();
  readonly pinned = new Set<bigint>();
  /** Blocks some committed state uses: never handed out before the next commit. */
  committed = new Set<bigint>();
  private next = BASE;
  private readonly free_: bigint[] = [];
  allocs = 0;

  constructor(readonly nodesize: number) {}

  alloc(): bigint {
    this.allocs++;
    let b = this.free_.pop();
    if (b === undefined) {
      b = this.next;
      this.next += BigInt(this.nodesize);
    }
    if (this.inUse.has(b) || this.committed.has(b)) throw new Error(`space handed out ${b} twice`);
    this.inUse.add(b);
    return b;
  }

  free(bytenr: bigint, _owner: bigint, _level: number, fresh: boolean): void {
    if (!this.inUse.delete(bytenr)) throw new Error(`block ${bytenr} freed but not in use`);
    if (fresh) this.free_.push(bytenr);
    else this.pinned.add(bytenr);
  }

  /** The new state is durable: the previous one's blocks are free now. */
  commit(): void {
    for (const b of this.pinned) this.free_.push(b);
    this.pinned.clear();
    this.committed = new Set(this.inUse);
  }
}

export function makeStore(nodesize = 4096, budget?: number): { store: BlockStore; space: TestSpace; device: MemoryDevice } {
  const device = new MemoryDevice(2n * MIRROR);
  const space = new TestSpace(nodesize);
  const store = new BlockStore({
    nodesize, ident: { headerFsid: TEST_FSID, chunkTreeUuid: TEST_CHUNK_UUID }, csumType: 0, device, space, transid: 10n,
    toPhysical: (bytenr) => [bytenr, bytenr + MIRROR],
    ...(budget !== undefined ? { budget } : {}),
  });
  return { store, space, device };
}

/** Reference model: items by key, compared in key order. */
export class Model {
  private readonly m = new Map<string, { key: BtrfsKey; data: Uint8Array }>();
  private static id(k: BtrfsKey): string {
    return `${k.objectid}:${k.type}:${k.offset}`;
  }
  put(key: BtrfsKey, data: Uint8Array): void {
    this.m.set(Model.id(key), { key, data });
  }
  delete(key: BtrfsKey): boolean {
    return this.m.delete(Model.id(key));
  }
  get(key: BtrfsKey): Uint8Array | undefined {
    return this.m.get(Model.id(key))?.data;
  }
  sorted(): { key: BtrfsKey; data: Uint8Array }[] {
    return [...this.m.values()].sort((a, b) => compareKeys(a.key, b.key));
  }
  get size(): number {
    return this.m.size;
  }
  clone(): Model {
    const c = new Model();
    for (const v of this.m.values()) c.put(v.key, v.data);
    return c;
  }
}

/**
 * Walks the whole tree and checks what btrfs check and the kernel's tree checker would: levels step
 * down by one, keys sorted in every block, each pointer's key and generation equal to the child's first
 * key and generation, no empty node, no empty leaf but a root, leaves within their size, no block
 * reached twice. Returns every block address and every item.
 */
export function walkTree(t: BTree): { blocks: Set<bigint>; items: { key: BtrfsKey; data: Uint8Array }[]; problems: string[] } {
  const blocks = new Set<bigint>();
  const items: { key: BtrfsKey; data: Uint8Array }[] = [];
  const problems: string[] = [];
  const root = t.rootBlock();
  const visit = (b: ReturnType<BTree['rootBlock']>, isRoot: boolean): void => {
    if (blocks.has(b.bytenr)) problems.push(`block ${b.bytenr} reached twice`);
    blocks.add(b.bytenr);
    for (let i = 1; i < b.nritems; i++) if (compareKeys(b.keys[i - 1]!, b.keys[i]!) >= 0) problems.push(`block ${b.bytenr}: keys out of order at ${i}`);
    if (b.level === 0) {
      if (b.nritems === 0 && !isRoot) problems.push(`empty leaf ${b.bytenr}`);
      if (b.used > leafRoom(t.nodesize)) problems.push(`leaf ${b.bytenr} overfull`);
      b.keys.forEach((key, i) => items.push({ key, data: b.data[i]! }));
      return;
    }
    if (b.nritems === 0) problems.push(`empty node ${b.bytenr}`);
    for (let i = 0; i < b.nritems; i++) {
      const c = t.child(b, i);
      if (c.level !== b.level - 1) problems.push(`block ${c.bytenr} level ${c.level} under ${b.level}`);
      const first = c.keys[0];
      if (first && compareKeys(first, b.keys[i]!) !== 0) problems.push(`node ${b.bytenr} slot ${i}: key differs from child's first key`);
      if (c.generation !== b.ptrGens[i]) problems.push(`node ${b.bytenr} slot ${i}: generation differs`);
      visit(c, false);
    }
  };
  visit(root, true);
  return { blocks, items, problems };
}
