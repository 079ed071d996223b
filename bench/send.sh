#!/usr/bin/env bash
# btrfs-ts send (offline, from the image file) vs the kernel's btrfs send of the same read-only subvolume
# (image loop-mounted), both writing to a file in the same directory. Source: the kernel's receive of
# streams/big/big-zstd-v2.stream (streams/make-big.sh) into a fresh image: ~1.2 GiB of files, two thirds
# zstd-compressed extents. Cases: protocol 1 (decompressed data) and protocol 2 --compressed-data.
# Correctness after the runs: btrfs-ts's stream equals the kernel's byte for byte. Peak RSS of btrfs-ts
# is the whole node process; of the kernel side only btrfs-progs (the kernel's memory is not counted).
# Rewrites the "send" section of docs/performance.md. Usage: sudo bench/send.sh [RUNS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
N=${1:-3}
need_big_streams big-zstd-v2
bench_workdir send

IMG=$WORK/src.img
truncate -s 6G "$IMG"
mkfs.btrfs -q -f "$IMG"
mount -o loop "$IMG" "$MNT"
btrfs receive -q -f "$REPO/streams/big/big-zstd-v2.stream" "$MNT"
sync
check "source: kernel-received manifest = streams/big/big.manifest" $BTRFS_TS manifest "$MNT/big" --expect "$REPO/streams/big/big.manifest"
umount "$MNT"

CASES=("v1|" "v2-compressed|--compressed-data")
for c in "${CASES[@]}"; do
  name=${c%%|*}
  args=${c#*|}
  echo "== $name" >&2
  for ((i = 1; i <= N; i++)); do
    mount -o loop,ro "$IMG" "$MNT"
    # shellcheck disable=SC2086
    measure "kernel-$name" btrfs send -q $args -f "$WORK/kernel-$name.stream" "$MNT/big"
    umount "$MNT"
    # shellcheck disable=SC2086
    measure "ts-$name" $BTRFS_TS send -q $args -f "$WORK/ts-$name.stream" "$IMG" big
  done
  stat -c "$name %s" "$WORK/ts-$name.stream" >>"$WORK/sizes"
  check "$name: btrfs-ts stream = kernel stream, byte for byte" cmp "$WORK/ts-$name.stream" "$WORK/kernel-$name.stream"
  rm -f "$WORK/ts-$name.stream" "$WORK/kernel-$name.stream"
done

OUT=$WORK/section.md
{
  echo "## send: \`btrfs-ts send\` (image file) vs kernel \`btrfs send\` (loop-mounted, read-only)"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/send.sh $N\` — $N runs per side and case (alternating). Source: the kernel's receive of \`streams/big/big-zstd-v2.stream\` into a fresh 6 GiB image (subvolume \`big\`, read-only). Both sides write the stream to a file in \`/tmp\`; the kernel side is \`btrfs send -q [ARGS] -f OUT MNT/big\` with the image mounted read-only before (not timed), btrfs-ts is \`btrfs-ts send -q [ARGS] -f OUT IMG big\`. Wall time is the median, peak RSS the maximum over the runs."
  echo
  echo "| case | stream size | kernel send | btrfs-ts send | ratio (ts/kernel) | btrfs-progs peak RSS | btrfs-ts peak RSS | btrfs-ts runs (s) | kernel runs (s) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
  for c in "${CASES[@]}"; do
    name=${c%%|*}
    size=$(awk -v n="$name" '$1==n{print $2}' "$WORK/sizes")
    echo "| $name${c#*|:+ (\`${c#*|}\`)} | $(awk -v b="$size" 'BEGIN{printf "%.0f MiB", b/1048576}') | $(secs "kernel-$name") s | $(secs "ts-$name") s | $(ratio "ts-$name" "kernel-$name") | $(max_rss "kernel-$name") MiB | $(max_rss "ts-$name") MiB | $(all_ms "ts-$name") | $(all_ms "kernel-$name") |"
  done
  echo
  echo "Correctness checks (after the timed runs):"
  echo
  checks_table
} >"$OUT"
cat "$OUT"
write_section send "$OUT"
