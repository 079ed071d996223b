#!/usr/bin/env node
// Replaces (or appends) one generated block of a Markdown file, delimited by
// <!-- bench:NAME --> ... <!-- /bench:NAME -->, so each benchmark rewrites only its own figures.
// Usage: node bench/write-section.mjs DOC NAME CONTENT_FILE
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const [doc, name, contentFile] = process.argv.slice(2);
if (!doc || !name || !contentFile) {
  console.error('usage: write-section.mjs DOC NAME CONTENT_FILE');
  process.exit(2);
}
const open = `<!-- bench:${name} -->`;
const close = `<!-- /bench:${name} -->`;
const block = `${open}\n${readFileSync(contentFile, 'utf8').trimEnd()}\n${close}`;
const text = existsSync(doc) ? readFileSync(doc, 'utf8') : '# Performance\n';
const a = text.indexOf(open);
const b = text.indexOf(close);
const out = a >= 0 && b > a ? text.slice(0, a) + block + text.slice(b + close.length) : `${text.trimEnd()}\n\n${block}\n`;
writeFileSync(doc, out);
console.error(`${doc}: section ${name} written`);
