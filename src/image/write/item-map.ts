/**
 * Keys and items of btrfs trees, keyed by (objectid u64, type u8, offset u64) in the kernel's order
 * (btrfs_comp_cpu_keys). (The file once held the item maps the writer kept its trees in; every tree is now
 * an engine/ B-tree on disk.)
 */
import type { BtrfsKey } from '../structs/fs-items.js';

export type Key = BtrfsKey;

export interface Item {
  key: Key;
  data: Uint8Array;
}

const U64_MAX = (1n << 64n) - 1n;
const M32 = 0xffffffffn;

export function keyString(k: Key): string {
  const oh = Number(k.objectid >> 32n);
  const ol = Number(k.objectid & M32);
  const fh = Number(k.offset >> 32n);
  const fl = Number(k.offset & M32);
  return String.fromCharCode(oh >>> 16, oh & 0xffff, ol >>> 16, ol & 0xffff, k.type, fh >>> 16, fh & 0xffff, fl >>> 16, fl & 0xffff);
}

export function keyFromString(ks: string): Key {
  const u = (i: number): number => ks.charCodeAt(i);
  return {
    objectid: (BigInt(((u(0) << 16) | u(1)) >>> 0) << 32n) | BigInt(((u(2) << 16) | u(3)) >>> 0),
    type: u(4),
    offset: (BigInt(((u(5) << 16) | u(6)) >>> 0) << 32n) | BigInt(((u(7) << 16) | u(8)) >>> 0),
  };
}

export function compareKeys(a: Key, b: Key): number {
  if (a.objectid !== b.objectid) return a.objectid < b.objectid ? -1 : 1;
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  if (a.offset !== b.offset) return a.offset < b.offset ? -1 : 1;
  return 0;
}

export const KEY_MIN: Key = { objectid: 0n, type: 0, offset: 0n };
export const KEY_MAX: Key = { objectid: U64_MAX, type: 255, offset: U64_MAX };
