#!/usr/bin/env bash
# CPU profiles (node --cpu-prof) of btrfs-ts dump and receive on the big streams; writes the top self-time
# functions of each into the "profiles" section of docs/performance.md. Usage: sudo bench/profile.sh [TOP]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TOP=${1:-12}
need_big_streams big-zstd-v2 big-v1
WORK=$(mktemp -d /tmp/bench-profile.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
OUT=$WORK/section.md
{
  echo "## profiles: where btrfs-ts spends its time"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/profile.sh $TOP\` — \`node --cpu-prof\`, summarised by \`bench/profile-top.mjs\` (self time per function; \`(idle)\` = waiting for I/O, \`writeBuffer\`/\`fsync\` = the synchronous image writes)."
} >"$OUT"
for s in big-zstd-v2 big-v1; do
  f=$REPO/streams/big/$s.stream
  cat "$f" >/dev/null
  for what in dump receive; do
    mkdir -p "$WORK/$what-$s"
    if [ "$what" = dump ]; then
      node --cpu-prof --cpu-prof-dir="$WORK/$what-$s" "$REPO/bin/btrfs-ts.js" dump -f "$f" >/dev/null
    else
      rm -f "$WORK/img"
      node --cpu-prof --cpu-prof-dir="$WORK/$what-$s" "$REPO/bin/btrfs-ts.js" receive -q -f "$f" "$WORK/img"
      rm -f "$WORK/img"
    fi
    { echo; echo "### \`btrfs-ts $what\` of \`$s\`"; echo; node "$BENCH_DIR/profile-top.mjs" "$WORK/$what-$s"/*.cpuprofile "$TOP"; } >>"$OUT"
  done
done
cat "$OUT"
write_section profiles "$OUT"
