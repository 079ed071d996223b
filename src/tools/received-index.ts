import { ReceiveError } from '../errors.js';
import { formatUuid } from './paths.js';

/**
 * What `extract` remembers about the subvolumes it materialized under a target directory, so a later
 * incremental stream can find its parent (SNAPSHOT clone_uuid) and clone sources (CLONE clone_uuid).
 * btrfs keeps the same facts in the uuid tree as each received subvolume's received_uuid; a plain
 * directory has nowhere to keep them, so they live in `DIR/.btrfs-ts-received.json`.
 */
export const RECEIVED_INDEX_FILE = '.btrfs-ts-received.json';

/** The index file and snapshot staging directories live next to the subvolumes: no subvolume may be named like them. */
export function isReservedName(name: Uint8Array): boolean {
  return Buffer.from(name).toString('latin1').startsWith('.btrfs-ts-');
}

export interface ReceivedSubvol {
  /** Directory name under the target (the SUBVOL/SNAPSHOT path), hex of the raw bytes. */
  nameHex: string;
  /** The same name for humans (latin1, may be lossy). */
  name: string;
  /** The stream's uuid: the sender's subvolume uuid, which becomes the received_uuid. */
  uuid: string;
  ctransid: string;
  /** clone_uuid of the SNAPSHOT command (the parent this one was received on top of), or null. */
  parentUuid: string | null;
  /** Where it came from (file name, informational). */
  source?: string;
}

export interface ReceivedIndexData {
  format: 'btrfs-ts-received';
  version: 1;
  subvolumes: ReceivedSubvol[];
}

export class ReceivedIndex {
  private readonly subvols: ReceivedSubvol[];

  constructor(data?: ReceivedIndexData) {
    this.subvols = data ? [...data.subvolumes] : [];
  }

  /** Validates a parsed JSON document; a damaged index is refused rather than guessed at. */
  static fromJson(text: string, where: string): ReceivedIndex {
    let d: unknown;
    try {
      d = JSON.parse(text);
    } catch (e) {
      throw new ReceiveError('EXTRACT_INDEX', `${where}: not valid JSON: ${(e as Error).message}`);
    }
    const o = d as Partial<ReceivedIndexData>;
    if (o?.format !== 'btrfs-ts-received' || o.version !== 1 || !Array.isArray(o.subvolumes)) {
      throw new ReceiveError('EXTRACT_INDEX', `${where}: not a btrfs-ts received-subvolume index`);
    }
    for (const s of o.subvolumes) {
      if (typeof s?.nameHex !== 'string' || !/^([0-9a-f]{2})+$/.test(s.nameHex) || typeof s.uuid !== 'string') {
        throw new ReceiveError('EXTRACT_INDEX', `${where}: malformed entry ${JSON.stringify(s)}`);
      }
    }
    return new ReceivedIndex(o as ReceivedIndexData);
  }

  toJson(): string {
    const d: ReceivedIndexData = { format: 'btrfs-ts-received', version: 1, subvolumes: this.subvols };
    return JSON.stringify(d, null, 2) + '\n';
  }

  get entries(): readonly ReceivedSubvol[] {
    return this.subvols;
  }

  /** The directory name (raw bytes) of the subvolume received with this uuid, or undefined. */
  findByUuid(uuid: Uint8Array): Uint8Array | undefined {
    const u = formatUuid(uuid);
    // the newest wins: a subvolume re-received after its directory was removed replaces the old record
    for (let i = this.subvols.length - 1; i >= 0; i--) {
      const s = this.subvols[i]!;
      if (s.uuid === u) return Uint8Array.from(Buffer.from(s.nameHex, 'hex'));
    }
    return undefined;
  }

  add(name: Uint8Array, uuid: Uint8Array, ctransid: bigint, parentUuid: Uint8Array | null, source?: string): void {
    const nameHex = Buffer.from(name).toString('hex');
    // a name can only hold one subvolume: drop a stale record of the same directory
    const keep = this.subvols.filter((s) => s.nameHex !== nameHex);
    this.subvols.length = 0;
    this.subvols.push(...keep);
    const e: ReceivedSubvol = {
      nameHex,
      name: Buffer.from(name).toString('latin1'),
      uuid: formatUuid(uuid),
      ctransid: ctransid.toString(),
      parentUuid: parentUuid ? formatUuid(parentUuid) : null,
    };
    if (source !== undefined) e.source = source;
    this.subvols.push(e);
  }
}
