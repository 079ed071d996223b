#!/usr/bin/env bash
# A small change next to many snapshots: an image of SNAPS daily read-only snapshots (kernel-made: a subvolume
# `data` of 400 files, one line appended to a log each day, a new 20 KB file every 50 days, `btrfs subvolume
# snapshot -r data snaps/dayN`), beside one of 2 such snapshots, to show what the count costs. Per image:
#   send:    `send -p snaps/day(N-1) snaps/dayN` — the kernel (image mounted read-only, untimed) vs btrfs-ts;
#   receive: the kernel's full stream of day 1 received first (untimed) into a copy of the image under
#            `recv/`, then its incremental of day 2 timed — the kernel (mounted, receive + sync) vs btrfs-ts.
# Checks: btrfs-ts's send received by the kernel on top of day(N-1) gives dayN (manifest); btrfs check of
# btrfs-ts's image after the receive. Rewrites the "snapshots" section of docs/performance.md.
# Usage: sudo bench/snapshots.sh [SNAPS [RUNS]]   (default: 1000 5)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
SNAPS=${1:-1000}
N=${2:-5}
((SNAPS >= 2)) || { echo "snapshots.sh: SNAPS must be at least 2" >&2; exit 2; }
(cd "$REPO" && npm run -s build >/dev/null)
bench_workdir snapshots

# make_image IMG COUNT : the image of COUNT daily snapshots, and the kernel's streams of day 1 and day 2 beside it
make_image() {
  local img=$1 count=$2
  truncate -s 2G "$img"
  mkfs.btrfs -q -f "$img"
  mount -o loop "$img" "$MNT"
  btrfs -q subvolume create "$MNT/data"
  mkdir "$MNT/snaps" "$MNT/recv" "$MNT/data/d"
  for ((f = 1; f <= 400; f++)); do head -c $((f * 50)) /dev/urandom >"$MNT/data/d/f$f"; done
  for ((i = 1; i <= count; i++)); do
    echo "day $i" >>"$MNT/data/d/log"
    ((i % 50 == 0)) && head -c 20000 /dev/urandom >"$MNT/data/d/r$i"
    btrfs subvolume snapshot -r "$MNT/data" "$MNT/snaps/day$i" >/dev/null
  done
  btrfs send -q -f "$img.full" "$MNT/snaps/day1"
  btrfs send -q -p "$MNT/snaps/day1" -f "$img.incr" "$MNT/snaps/day2"
  $BTRFS_TS manifest "$MNT/snaps/day$count" -o "$img.last.manifest"
  umount "$MNT"
}

for count in 2 "$SNAPS"; do
  img=$WORK/s$count.img
  echo "== $count snapshots" >&2
  make_image "$img" "$count"
  prev=day$((count - 1)) last=day$count
  for ((i = 1; i <= N; i++)); do
    send_pair "send-$count" "$img" "snaps/$last" -p "snaps/$prev"

    cp --sparse=always "$img" "$WORK/k.img"
    mount -o loop "$WORK/k.img" "$MNT"
    btrfs receive -q -f "$img.full" "$MNT/recv"
    sync
    measure "kernel-recv-$count" sh -c "btrfs receive -q -f '$img.incr' '$MNT/recv' && sync"
    umount "$MNT"
    rm -f "$WORK/k.img"
    cp --sparse=always "$img" "$WORK/t.img"
    $BTRFS_TS receive -q --dest recv -f "$img.full" "$WORK/t.img"
    sync
    measure "ts-recv-$count" $BTRFS_TS receive -q --dest recv -f "$img.incr" "$WORK/t.img"
    ((i < N)) && rm -f "$WORK/t.img"
  done
  stat -c "$count %s" "$WORK/ts-send-$count.stream" >>"$WORK/sizes"
  check "$count snapshots: btrfs check --readonly of btrfs-ts's image after its receive" btrfs check --readonly "$WORK/t.img"
  rm -f "$WORK/t.img"
  mount -o loop "$img" "$MNT"
  mkdir "$MNT/check"
  btrfs receive -q -f "$WORK/ts-send-$count.stream" "$MNT/check"
  check "$count snapshots: kernel receive of btrfs-ts send -p $prev $last on top of $prev = $last" same_tree "$MNT/check/$last" "$img.last.manifest"
  umount "$MNT"
  rm -f "$img"
done

OUT=$WORK/section.md
{
  echo "## many snapshots: a small change next to $SNAPS read-only snapshots"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/snapshots.sh $SNAPS $N\` — $N runs per side and case (alternating). A kernel-made image of daily read-only snapshots \`snaps/day1..dayN\` of a subvolume of 400 files (one line appended to a log each day, a 20 KB file every 50 days), and one of 2 such snapshots. *send*: \`btrfs send -q -p MNT/snaps/day(N-1) -f OUT MNT/snaps/dayN\` (mounted read-only before, untimed) against \`btrfs-ts send -q -p snaps/day(N-1) -f OUT IMG snaps/dayN\`. *receive*: a copy of the image gets the kernel's full stream of day 1 under \`recv/\` (untimed), then its incremental of day 2 is timed: \`btrfs receive\` + \`sync\` into the mounted copy against \`btrfs-ts receive -q --dest recv\`. Wall time is the median, peak RSS the maximum."
  echo
  echo "| case | kernel | btrfs-ts | ratio (ts/kernel) | kernel CPU | btrfs-ts CPU | btrfs-ts peak RSS | btrfs-ts runs (s) | kernel runs (s) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
  for count in 2 "$SNAPS"; do
    size=$(awk -v n="$count" '$1==n{print $2}' "$WORK/sizes")
    echo "| send -p, $count snapshots ($size-byte stream) | $(secs "kernel-send-$count") s | $(secs "ts-send-$count") s | $(ratio "ts-send-$count" "kernel-send-$count") | $(cpu_secs "kernel-send-$count") s | $(cpu_secs "ts-send-$count") s | $(max_rss "ts-send-$count") MiB | $(all_ms "ts-send-$count") | $(all_ms "kernel-send-$count") |"
    echo "| incremental receive, $count snapshots | $(secs "kernel-recv-$count") s | $(secs "ts-recv-$count") s | $(ratio "ts-recv-$count" "kernel-recv-$count") | $(cpu_secs "kernel-recv-$count") s | $(cpu_secs "ts-recv-$count") s | $(max_rss "ts-recv-$count") MiB | $(all_ms "ts-recv-$count") | $(all_ms "kernel-recv-$count") |"
  done
  checks_section
} >"$OUT"
write_section snapshots "$OUT"
cat "$OUT"
