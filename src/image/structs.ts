/**
 * On-disk btrfs structures, encode and decode, shared by the image reader and writer. Split by area to
 * keep modules small; import everything from here.
 */
export * from './structs/constants.js';
export * from './structs/bytes.js';
export * from './structs/fs-items.js';
export * from './structs/tree-items.js';
export * from './structs/chunk-items.js';
export * from './structs/superblock.js';
export * from './structs/tree-block.js';
export * from './structs/csum.js';
