#!/usr/bin/env bash
# Pruning a chain of backups: `btrfs-ts subvolume delete` (image file) vs the kernel's `btrfs subvolume
# delete -c` followed by waiting for the cleaner's drop of the trees (`btrfs subvolume list -d` polled; the image
# loop-mounted, the mount not timed). Source: chain.sh's kernel-made streams (a full of FILES small files,
# then DAYS daily incrementals of small-files.py's changes ×X), all received by btrfs-ts into one image
# (61 subvolumes sharing most of their blocks with the defaults). Cases, each from a fresh copy of that
# image (`cp --sparse=always`, then `sync`, untimed): the oldest day (the full) alone, and the older half
# of the chain (days 0 to DAYS/2) in one command. Correctness after the last round: both results `btrfs
# check --readonly` clean, the same subvolume list and the same data space in use to the byte (`btrfs
# filesystem df -b`). Peak RSS only for btrfs-ts (the kernel's side is a short btrfs-progs process).
# Rewrites the "delete" section of docs/performance.md. Usage: sudo bench/delete.sh [RUNS [DAYS [FILES [X]]]]
# (default: 3 60 3000 20, chain.sh's chain-x20 streams)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
N=${1:-3}
DAYS=${2:-60}
FILES=${3:-3000}
X=${4:-20}
((DAYS >= 2)) || { echo "delete.sh: DAYS must be at least 2" >&2; exit 2; }
(cd "$REPO" && npm run -s build >/dev/null)
bench_workdir delete
chain_streams "$DAYS" "$FILES" "$X"

echo "== receiving $((DAYS + 1)) streams into one image (btrfs-ts)" >&2
BASE=$WORK/base.img
for ((d = 0; d <= DAYS; d++)); do $BTRFS_TS receive -q -f "$CACHE/$(day "$d").stream" "$BASE"; done
HALF=$((DAYS / 2))
half=()
for ((d = 0; d <= HALF; d++)); do half+=("$(day "$d")"); done
CASES=("one|$(day 0)" "half|${half[*]}")

# data_used MOUNTPOINT : bytes of data in use, as `btrfs filesystem df -b` reports them
data_used() { btrfs filesystem df -b "$1" | awk -F'used=' '/^Data/{print $2+0}'; }
# after IMG LABEL : what the result looks like to the kernel (subvolume paths, data in use), kept for the checks
after() {
  mount -o loop,ro "$1" "$MNT"
  btrfs subvolume list "$MNT" | awk '{print $NF}' >"$WORK/$2.list"
  data_used "$MNT" >"$WORK/$2.data"
  umount "$MNT"
}

for ((i = 1; i <= N; i++)); do
  for c in "${CASES[@]}"; do
    name=${c%%|*}
    read -r -a subs <<<"${c#*|}"
    echo "== $name, round $i" >&2
    cp --sparse=always "$BASE" "$WORK/ts.img"
    sync
    measure "ts-$name" "$BTRFS_TS" subvolume delete -q "$WORK/ts.img" "${subs[@]}"
    cp --sparse=always "$BASE" "$WORK/k.img"
    sync
    mount -o loop "$WORK/k.img" "$MNT"
    # `btrfs subvolume sync` looks every second; the list of deleted subvolumes still being dropped is
    # polled here every 20 ms instead, so the kernel's time is not rounded up to a second; then its
    # transaction is committed, as btrfs-ts's change ends with the image written and synced
    time_only "k-$name" sh -c "cd '$MNT' && btrfs subvolume delete -c ${subs[*]} && while [ -n \"\$(btrfs subvolume list -d .)\" ]; do sleep 0.02; done && btrfs filesystem sync ."
    umount "$MNT"
    if ((i == N)); then
      check "$name: btrfs check --readonly of btrfs-ts's result" btrfs check --readonly "$WORK/ts.img"
      check "$name: btrfs check --readonly of the kernel's result" btrfs check --readonly "$WORK/k.img"
      after "$WORK/ts.img" "ts-$name"
      after "$WORK/k.img" "k-$name"
      check "$name: the same subvolumes left" cmp "$WORK/ts-$name.list" "$WORK/k-$name.list"
      check "$name: the same data in use ($(cat "$WORK/ts-$name.data") bytes)" cmp "$WORK/ts-$name.data" "$WORK/k-$name.data"
    fi
    rm -f "$WORK/ts.img" "$WORK/k.img"
  done
done

OUT=$WORK/section.md
{
  echo "## subvolume delete: pruning a received chain, btrfs-ts (image file) vs the kernel"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/delete.sh $N $DAYS $FILES $X\` — chain.sh's kernel-made streams (a full of $FILES small files, $DAYS daily incrementals of \`small-files.py day … $X\`; cached in \`$CACHE\`), all received by btrfs-ts into one image ($((DAYS + 1)) subvolumes). Each run starts from a fresh copy of it (\`cp --sparse=always\`, \`sync\`, untimed). btrfs-ts: \`btrfs-ts subvolume delete -q IMG SUBVOL...\`; the kernel: the copy loop-mounted (not timed), \`btrfs subvolume delete -c SUBVOL... && btrfs subvolume sync MNT\` (the cleaner's drop of the trees included). Cases: the oldest day alone (the full: its blocks are shared with every later day), and days 0–$HALF in one command. Median of $N runs (all runs in brackets); peak RSS of btrfs-ts."
  echo
  echo "| case | btrfs-ts | kernel | btrfs-ts ÷ kernel | btrfs-ts peak RSS |"
  echo "|---|---:|---:|---:|---:|"
  for c in "${CASES[@]}"; do
    name=${c%%|*}
    echo "| $name ($(wc -w <<<"${c#*|}") subvolumes) | $(secs "ts-$name") s ($(runs "ts-$name")) | $(secs "k-$name") s ($(runs "k-$name")) | $(ratio "ts-$name" "k-$name") | $(max_rss "ts-$name") MiB |"
  done
  checks_section
} >"$OUT"
cat "$OUT"
write_section delete "$OUT"
