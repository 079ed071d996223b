// Runs several btrfs-ts CLI commands in one process (node start-up is most of a small command's cost)
// and prints one JSON line per command: exit status, stdout (cut at a limit), stderr. An error escaping
// main() is reported with its stack, as bin/btrfs-ts.js would print it (exit 70).
import { main } from '../../dist/cli/main.js';

const LIMIT = 1 << 20;
const commands = JSON.parse(process.argv[2]);
const realOut = process.stdout.write.bind(process.stdout);
const realErr = process.stderr.write.bind(process.stderr);
for (const argv of commands) {
  let out = '', err = '', outBytes = 0;
  process.stdout.write = (chunk, enc, cb) => {
    const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1');
    outBytes += s.length;
    if (out.length < LIMIT) out += s.slice(0, LIMIT - out.length);
    if (typeof enc === 'function') enc(); else if (typeof cb === 'function') cb();
    return true;
  };
  process.stderr.write = (chunk, enc, cb) => {
    err += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1');
    if (typeof enc === 'function') enc(); else if (typeof cb === 'function') cb();
    return true;
  };
  process.exitCode = undefined;
  let status;
  try {
    status = await main(['node', 'btrfs-ts', ...argv]);
  } catch (e) {
    err += `btrfs-ts: ${e?.stack ?? e}\n`;
    status = 70;
  }
  process.stdout.write = realOut;
  process.stderr.write = realErr;
  // peak resident memory of the process so far (KiB): a command that allocates without bound shows here
  realOut(JSON.stringify({ argv, status, stdout: out, outBytes, stderr: err, maxRSS: process.resourceUsage().maxRSS }) + '\n');
}
process.exitCode = 0;
