#!/bin/sh
':' //; case "$1" in receive|replay) set -- --max-semi-space-size=4 --max-inlined-bytecode-size-cumulative=300 "$0" "$@" ;; *) set -- "$0" "$@" ;; esac; unset NODE_EXTRA_CA_CERTS; exec node "$@"
// The two lines above are read by sh and by node alike: sh starts node, node sees a string and a comment.
// --max-semi-space-size=4, for receive and replay only: V8 grows each of its two young-generation halves to
// 16 MiB when many objects survive a scavenge, as a receive's decoded tree blocks do; 4 MiB halves took peak
// RSS of a 300k-file receive from 236-258 to 205 MiB (the 256 MiB bound, issue 11) at no measurable CPU cost.
// --max-inlined-bytecode-size-cumulative=300 (V8's default 920), receive and replay too: TurboFan's compiles
// take about as much CPU on the second core as the receive's main thread, and smaller inlined bodies cut
// them by a quarter (recv13b); comp-zstd-v2 0.95 → 0.84 s, CPU 1.35 → 1.14 s (docs/performance.md, ninth
// session). These flags are src/cli/launch.ts's RECEIVE_FLAGS, under which receive's code cache is made.
// Not for the other commands: any V8 flag changes V8's flag hash, and node's embedded code cache of its own
// JavaScript (the ESM loader and the rest) is then rejected and compiled from source — `--version` 168 → 249 M
// instructions (callgrind), ~15 ms (docs/performance.md, seventh session, start12).
// NODE_EXTRA_CA_CERTS unset: when it is set, node 20 parses its whole root certificate store and the named
// file while starting (~50 ms of a 78 ms `node -e 0` here); btrfs-ts opens no TLS connection.
// `node bin/btrfs-ts.js` runs without either. Heap sizes cannot be changed once the process runs
// (v8.setFlagsFromString leaves them), and `#!/usr/bin/env -S node ...` is not understood by every env (BusyBox).
// CommonJS (bin/package.json), so that node starts it without its ES module loader: dist/cli/launch.cjs is
// dist/cli/launch.js built as CommonJS by `npm run build` (~5-10 ms of every command's start, tenth session
// of docs/performance.md); where it is missing or older than launch.js, launch.js itself is imported.
// launch: the CLI from its bundle and code cache (made by `npm run build`), else from dist/
const { statSync } = require('node:fs');
const { join } = require('node:path');

function launcher() {
  const cli = join(__dirname, '..', 'dist', 'cli');
  try {
    if (statSync(join(cli, 'launch.cjs')).mtimeMs >= statSync(join(cli, 'launch.js')).mtimeMs) return Promise.resolve(require(join(cli, 'launch.cjs')));
  } catch {
    // no CommonJS launcher (a build without esbuild, or tsc alone): the ES module
  }
  return import('../dist/cli/launch.js');
}

// Whether standard output or error was made: see the end.
let stdio = false;
/** Makes process[name] (stdout or stderr) note its first use in `stdio`, and hands the stream to `first` then. */
function onFirstUse(name, first) {
  const getter = Object.getOwnPropertyDescriptor(process, name);
  Object.defineProperty(process, name, {
    configurable: true,
    enumerable: getter.enumerable,
    get() {
      Object.defineProperty(process, name, getter);
      stdio = true;
      const stream = process[name];
      first?.(stream);
      return stream;
    },
  });
}
// A reader that went away (`btrfs-ts dump | head`) ends the output quietly, as for any Unix filter; any
// other failure to write it (`> /dev/full`, a full disk, EIO) is one error line and status 1, as every
// other error is — not a stack trace. Set on standard output's first use, not before: making
// process.stdout loads node's stream modules, which a receive (no output; its V8 flags make node compile
// its own modules from source) paid ~35 M instructions for.
onFirstUse('stdout', (out) => out.on('error', (err) => {
  if (err && err.code === 'EPIPE') process.exit(0);
  const what = String((err && err.message) || err).replace(/^E[A-Z0-9]+: /, '').replace(/, \w+$/, '');
  process.stderr.write(`btrfs-ts: ERROR: standard output: ${what}${err && err.syscall ? ` (${err.syscall})` : ''}${err && err.code ? ` [${err.code}]` : ''}\n`);
  process.exit(1);
}));
onFirstUse('stderr');

launcher()
  .then(({ loadMain }) => loadMain())
  .then((main) => main(process.argv))
  .then(
    (code) => {
      // A command that never made standard output or error (a quiet receive or send -f) has nothing left to
      // write when main resolves — its files are closed and its threads joined before — so it exits now
      // instead of letting node tear its heap and environment down: ~3 ms of a 140 ms incremental send
      // (docs/performance.md, fifteenth session). Otherwise node ends as usual, once their writes (to a
      // pipe, asynchronous) are out.
      if (!stdio) process.exit(code);
      process.exitCode = code;
    },
    (err) => { process.stderr.write(`btrfs-ts: ${err?.stack ?? err}\n`); process.exitCode = 70; },
  );
