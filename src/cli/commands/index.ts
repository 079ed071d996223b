import type { Command } from 'commander';
import * as dump from './dump.js';
import * as plan from './plan.js';
import * as receive from './receive.js';
import * as replay from './replay.js';
import * as manifest from './manifest.js';
import * as mkfs from './mkfs.js';
import * as ls from './ls.js';
import * as cat from './cat.js';
import * as subvolume from './subvolume.js';
import * as extract from './extract.js';
import * as extractStream from './extract-stream.js';
import * as verify from './verify.js';
import * as convert from './convert.js';

/**
 * Each command lives in its own module and registers itself here, so commands can be added without
 * touching each other.
 */
export function registerCommands(program: Command): void {
  dump.register(program);
  plan.register(program);
  receive.register(program);
  replay.register(program);
  manifest.register(program);
  mkfs.register(program);
  ls.register(program);
  cat.register(program);
  subvolume.register(program);
  extract.register(program);
  extractStream.register(program);
  verify.register(program);
  convert.register(program);
}
