import type { Command } from 'commander';
import { openInput } from '../../io/input.js';
import { withProgress, withProgressOptions } from '../progress.js';
import { verifyStream, type SubvolSummary, type VerifyProblem, type VerifyReport } from '../../tools/verify.js';

function problemLine(p: VerifyProblem): string {
  const where: string[] = [];
  if (p.offset !== undefined) where.push(`at byte ${p.offset}`);
  if (p.commandIndex !== undefined) where.push(`command #${p.commandIndex}`);
  if (p.command !== undefined) where.push(p.command);
  if (p.path !== undefined) where.push(`path ${JSON.stringify(p.path)}`);
  return `PROBLEM ${p.kind}: ${where.length ? where.join(', ') + ': ' : ''}${p.message}\n`;
}

function subvolLines(s: SubvolSummary): string {
  const counts = Object.entries(s.commands).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k.toLowerCase()}=${v}`).join(' ');
  const codecs = Object.entries(s.codecs).map(([k, v]) => `${k}=${v}`).join(' ');
  const d = s.data;
  return [
    `stream ${s.streamIndex} (protocol ${s.version}): ${s.kind} ${JSON.stringify(s.name)}`,
    `  uuid:        ${s.uuid}  ctransid ${s.ctransid}`,
    `  parent uuid: ${s.parentUuid ?? '-'}${s.parentCtransid !== null ? `  ctransid ${s.parentCtransid}` : ''}`,
    `  commands:    ${counts}`,
    `  data bytes:  write=${d.write} encoded=${d.encoded} (file bytes ${d.encodedFile}) clone=${d.clone}`,
    `  codecs:      ${codecs || '-'}`,
    ...(s.ended ? [] : ['  (no END: continued by the next subvolume, as `send -e` writes it)']),
  ].join('\n') + '\n';
}

export function formatVerifyReport(r: VerifyReport): string {
  let out = r.subvolumes.map(subvolLines).join('');
  out += r.problems.map(problemLine).join('');
  if (r.droppedProblems) out += `... and ${r.droppedProblems} more problem(s)\n`;
  const n = r.problems.length + r.droppedProblems;
  out += `${r.ok ? 'OK' : 'FAILED'}: ${r.streams} stream(s), ${r.subvolumes.length} subvolume(s), ${r.commands} commands, ${r.bytes} bytes, ${n} problem(s)\n`;
  return out;
}

const jsonReplacer = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);

export function register(program: Command): void {
  withProgressOptions(program
    .command('verify')
    .description('check a stored stream without receiving it: CRCs, structure, encoded data, path sanity; exit 1 on any problem')
    .option('-f, --file <FILE>', 'read the stream from FILE instead of stdin')
    .option('--json', 'machine-readable report')
    .option('--max-problems <N>', 'list at most N problems (default 1000)', (v) => Number(v)))
    .action(async (o: { file?: string; json?: boolean; maxProblems?: number; progress?: boolean }) => {
      const r = await withProgress({ label: 'verify', flag: o.progress }, async (p) =>
        verifyStream(await openInput(o.file, p), o.maxProblems !== undefined ? { maxProblems: o.maxProblems } : {}));
      process.stdout.write(o.json ? JSON.stringify(r, jsonReplacer, 2) + '\n' : formatVerifyReport(r));
      if (!r.ok) process.exitCode = 1;
    });
}
