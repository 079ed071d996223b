#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

// A reader that went away (`btrfs-ts dump | head`) ends the output quietly, as for any Unix filter.
process.stdout.on('error', (err) => {
  if (err && err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`btrfs-ts: ${err?.stack ?? err}\n`); process.exitCode = 70; },
);
