#!/bin/sh
':' //; exec node --max-semi-space-size=4 "$0" "$@"
// The two lines above are read by sh and by node alike: sh starts node with the flag, node sees a string
// and a comment. Why the flag: V8 grows each of its two young-generation halves to 16 MiB when many objects
// survive a scavenge, as a receive's decoded tree blocks do; 4 MiB halves took peak RSS of a 300k-file
// receive from 236-258 to 205 MiB (the 256 MiB bound, issue 11) at no measurable CPU cost (docs/performance.md).
// `node bin/btrfs-ts.js` runs without it. Heap sizes cannot be changed once the process runs (v8.setFlagsFromString
// leaves them), and `#!/usr/bin/env -S node ...` is not understood by every env (BusyBox).
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
