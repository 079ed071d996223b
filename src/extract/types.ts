import type { ReceivedIndex } from '../tools/received-index.js';
import type { SyscallHelper } from './syscall-helper.js';

/** What the extract receiver needs from its driver (stream.ts), and what it counts. */
export interface ExtractHooks {
  root: Buffer;
  index: ReceivedIndex;
  helper: SyscallHelper;
  owners: boolean;
  xattrs: boolean;
  warn(msg: string): void;
  /** Materializes a snapshot of the subvolume in directory `parent` as directory `name` (both under root). */
  snapshot(parent: Uint8Array, name: Uint8Array): Promise<void>;
  /** A subvolume's END: record it. */
  finished(name: Uint8Array, uuid: Uint8Array, ctransid: bigint, parentUuid: Uint8Array | null): Promise<void>;
}

export interface ExtractStats {
  subvolumes: number;
  commands: number;
  dataBytes: number;
  warnings: number;
}
