#!/usr/bin/env bash
# btrfs-ts dump vs btrfs receive --dump on the big streams (streams/make-big.sh), output to /dev/null.
# Both verify every command's CRC32C (btrfs-progs always does; btrfs-ts unless told not to). The outputs are
# compared byte for byte once per stream before timing. Wall time: median of N runs (default 3, runs
# alternate between the tools); peak RSS: the largest of the runs. Rewrites the "dump" section of
# docs/performance.md. Usage: bench/dump.sh [RUNS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${1:-3}
STREAMS=(comp-zstd-v2 big-zstd-v2 big-v1)
need_big_streams "${STREAMS[@]}"
bench_workdir dump

for s in "${STREAMS[@]}"; do
  f=$REPO/streams/big/$s.stream
  echo "== $s ($(stat -c %s "$f") bytes)" >&2
  cat "$f" >/dev/null # both tools read from the page cache
  btrfs receive --dump -f "$f" >"$WORK/progs.dump"
  $BTRFS_TS dump -f "$f" >"$WORK/ts.dump"
  if cmp -s "$WORK/progs.dump" "$WORK/ts.dump"; then
    echo "$s same" >>"$WORK/equal"
  else
    echo "$s DIFFERENT" >>"$WORK/equal"; echo "WARNING: dump outputs differ for $s" >&2
  fi
  echo "$s $(wc -l <"$WORK/progs.dump")" >>"$WORK/lines"
  for ((i = 1; i <= N; i++)); do
    measure "progs-$s" btrfs receive --dump -f "$f"
    measure "ts-$s" $BTRFS_TS dump -f "$f"
  done
done

OUT=$WORK/section.md
{
  echo "## dump: \`btrfs-ts dump\` vs \`btrfs receive --dump\`"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/dump.sh $N\` — $N runs per tool and stream (alternating), output to /dev/null, stream in the page cache; wall time and CPU (user+sys) are medians, peak RSS the maximum over the runs. Both tools verify every command's CRC32C."
  echo
  echo "| stream | size | dump lines | outputs | btrfs-progs wall | btrfs-ts wall | ratio | btrfs-progs CPU | btrfs-ts CPU | btrfs-progs peak RSS | btrfs-ts peak RSS | btrfs-ts runs (s) |"
  echo "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
  for s in "${STREAMS[@]}"; do
    size=$(stat -c %s "$REPO/streams/big/$s.stream")
    echo "| \`$s\` | $(awk -v b="$size" 'BEGIN{printf "%.0f MiB", b/1048576}') | $(awk -v s="$s" '$1==s{print $2}' "$WORK/lines") | $(awk -v s="$s" '$1==s{print $2}' "$WORK/equal") | $(secs "progs-$s") s | $(secs "ts-$s") s | $(ratio "ts-$s" "progs-$s") | $(cpu_secs "progs-$s") s | $(cpu_secs "ts-$s") s | $(max_rss "progs-$s") MiB | $(max_rss "ts-$s") MiB | $(all_ms "ts-$s") |"
  done
} >"$OUT"
cat "$OUT"
write_section dump "$OUT"
