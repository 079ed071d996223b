#!/usr/bin/env bash
# Start-up cost: `btrfs-ts --version`, a dump of a tiny stream and a tiny incremental send against
# `node -e 0` (node's own start) and btrfs-progs' dump of the same stream. Runs alternate between the commands; wall time is the median
# of N runs (default 15), CPU (user+sys) the median too. Rewrites the "startup" section of
# docs/performance.md. Usage: bench/startup.sh [RUNS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${1:-15}
(cd "$REPO" && npm run -s build >/dev/null)
bench_workdir startup
TINY=$REPO/streams/full-v1.stream
CPU=$WORK/cpu
# the send's image: full-v1 and its incremental received (untimed); the send goes to /dev/null
IMG=$WORK/send.img
rm -f "$IMG"
for s in full-v1 incr-v1; do $BTRFS_TS receive -q -f "$REPO/streams/$s.stream" "$IMG"; done
# node-e0 is node's start as bin/btrfs-ts.js starts it (NODE_EXTRA_CA_CERTS unset: set, node 20 parses its whole
# certificate store at start, ~50 ms here, and btrfs-ts needs no TLS); node-e0-env is node as this shell has it
labels=(node-e0 node-e0-env version dump-ts dump-progs send-ts)
cmd() {
  case $1 in
    node-e0) echo "env -u NODE_EXTRA_CA_CERTS node -e 0" ;;
    node-e0-env) echo "node -e 0" ;;
    version) echo "$BTRFS_TS --version" ;;
    dump-ts) echo "$BTRFS_TS dump -f $TINY" ;;
    dump-progs) echo "btrfs receive --dump -f $TINY" ;;
    send-ts) echo "$BTRFS_TS send -q -p full -f /dev/null $IMG incr" ;;
  esac
}
for ((i = 1; i <= N; i++)); do
  for l in "${labels[@]}"; do
    # shellcheck disable=SC2046
    measure "$l" /usr/bin/time -f '%U %S' -a -o "$CPU.$l" $(cmd "$l")
  done
done
cpu_ms() { awk '{printf "%d\n", ($1 + $2) * 1000}' "$CPU.$1" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

OUT=$WORK/section.md
{
  echo "## start-up: \`btrfs-ts --version\` and a tiny dump vs \`node -e 0\`"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`bench/startup.sh $N\` — $N runs of each command, alternating; wall and CPU (user+sys) medians. The tiny stream is \`streams/full-v1.stream\` ($(stat -c %s "$TINY") bytes); the send is an incremental of the image received from it and \`streams/incr-v1.stream\` (\`-p full ... incr\`, to /dev/null)."
  echo
  echo "The baseline is \`node -e 0\` with NODE_EXTRA_CA_CERTS unset, as bin/btrfs-ts.js starts node (this machine's environment sets it, which costs node ~50 ms at start: second row)."
  echo
  echo "| command | wall | CPU | wall − node -e 0 |"
  echo "|---|---:|---:|---:|"
  for l in "${labels[@]}"; do
    echo "| \`$(cmd "$l" | sed "s#$REPO/##g; s#$WORK/##g")\` | $(median_ms "$l") ms | $(cpu_ms "$l") ms | $(( $(median_ms "$l") - $(median_ms node-e0) )) ms |"
  done
} >"$OUT"
cat "$OUT"
write_section startup "$OUT"
