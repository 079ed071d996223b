#!/usr/bin/env bash
# Compressed stream input: `btrfs-ts dump` of STREAM stored plain, zstd-, gzip- and xz-compressed, beside
# btrfs-progs' `btrfs receive --dump` of the plain file and of the decompressor piped into it (the way a
# btrfs-progs user reads a compressed stream). Prints a markdown table: wall (s) and peak RSS (MiB) per run.
# Usage: bench/compressed-input.sh STREAM
set -euo pipefail
source "$(dirname "$0")/lib.sh"
STREAM=${1:?usage: bench/compressed-input.sh STREAM}
bench_workdir compressed-input
(cd "$REPO" && npm run -s build >/dev/null)
zstd -q -3 -T1 -c "$STREAM" >"$WORK/s.zst"
gzip -1 -c "$STREAM" >"$WORK/s.gz"
xz -0 -T1 -c "$STREAM" >"$WORK/s.xz"

# run LABEL CMD : wall seconds and max RSS of one run (output discarded)
run() {
  local label=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f %M -o "$WORK/rss" bash -c "$*" >/dev/null
  t1=$(date +%s%N)
  local cmd=${*//|/\\|}
  printf '| %s | %s | %d | %s |\n' "$label" "$(awk "BEGIN{printf \"%.2f\", ($t1-$t0)/1e9}")" "$(( $(cat "$WORK/rss") / 1024 ))" "\`$cmd\`"
}
echo "stream: $STREAM ($(stat -c %s "$STREAM") bytes; zst $(stat -c %s "$WORK/s.zst"), gz $(stat -c %s "$WORK/s.gz"), xz $(stat -c %s "$WORK/s.xz")); load at start $LOAD_START"
echo
echo '| input | wall s | peak RSS MiB (of the timed shell: the largest process) | command |'
echo '| --- | --- | --- | --- |'
cat "$STREAM" "$WORK"/s.* >/dev/null   # warm page cache: every row reads from memory
run 'progs, plain' "btrfs receive --dump -f $STREAM"
run 'progs, from zstd -dc' "zstd -dc $WORK/s.zst | btrfs receive --dump"
run 'xz -dc alone' "xz -dc $WORK/s.xz"
run 'btrfs-ts, plain' "$BTRFS_TS dump -f $STREAM"
run 'btrfs-ts, .zst' "$BTRFS_TS dump -f $WORK/s.zst"
run 'btrfs-ts, .gz' "$BTRFS_TS dump -f $WORK/s.gz"
run 'btrfs-ts, .xz' "$BTRFS_TS dump -f $WORK/s.xz"
run 'btrfs-ts, .zst on stdin' "$BTRFS_TS dump < $WORK/s.zst"
echo
echo "load at end $(cut -d' ' -f1-3 /proc/loadavg)"
