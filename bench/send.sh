#!/usr/bin/env bash
# btrfs-ts send (offline, from the image file) vs the kernel's btrfs send of the same read-only subvolume
# (image loop-mounted), both writing to a file in the same directory. Source: the kernel's receive of
# streams/big/big-zstd-v2.stream (streams/make-big.sh) into a fresh image: ~1.2 GiB of files, two thirds
# zstd-compressed extents. Cases: protocol 1 (decompressed data) and protocol 2 --compressed-data.
# Incremental cases, sent with -p big by both: a snapshot of `big` changed (files appended to and rewritten in
# part, some renamed across directories, some deleted, a directory moved, new files: a 30 MB stream), and a
# heavier day (~0.5 GB written: a third of the files appended to, a fifth rewritten in part, new files).
# Correctness after the runs: btrfs-ts's full streams equal the kernel's byte for byte; the kernel's
# receive of each btrfs-ts incremental stream on top of `big` gives its changed snapshot (manifest). Peak RSS of btrfs-ts
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
# the incremental's child: deterministic changes to a snapshot of big (every 7th file appended to, every
# 11th rewritten 64 KiB at 4 KiB, every 13th renamed into another directory, every 17th deleted, new files)
btrfs subvolume snapshot "$MNT/big" "$MNT/big2" >/dev/null
(
  cd "$MNT/big2"
  mapfile -t files < <(find . -type f | sort)
  mapfile -t dirs < <(find . -mindepth 1 -type d | sort)
  for i in "${!files[@]}"; do
    f=${files[$i]}
    if ((i % 17 == 0)); then rm "$f"; continue; fi
    ((i % 7 == 0)) && head -c 100000 /dev/zero | tr '\0' 'a' >>"$f"
    ((i % 11 == 0)) && dd if=/dev/urandom of="$f" bs=64k seek=1 count=1 conv=notrunc status=none 2>/dev/null
    ((i % 13 == 0)) && mv "$f" "${dirs[$((i % ${#dirs[@]}))]}/moved-$i"
  done
  mkdir -p new/sub && mv "${dirs[1]}" new/sub/ && for i in $(seq 1 50); do head -c $((i * 10000)) /dev/urandom >new/f$i; done
)
btrfs subvolume snapshot -r "$MNT/big2" "$MNT/big2-ro" >/dev/null
# the heavy incremental's child: a day that writes ~0.5 GB (every 3rd file gets 1 MiB of text appended, every
# 5th its first 512 KiB rewritten with random bytes, 20 new 5 MiB files, half random, half text)
btrfs subvolume snapshot "$MNT/big" "$MNT/big3" >/dev/null
seq 1 200000 | sed 's/^/line of a log that grows every day, entry number /' | head -c 1048576 >"$WORK/text1m" || true
(
  cd "$MNT/big3"
  mapfile -t files < <(find . -type f | sort)
  for i in "${!files[@]}"; do
    f=${files[$i]}
    if ((i % 3 == 0)); then cat "$WORK/text1m" >>"$f"; fi
    if ((i % 5 == 0)); then dd if=/dev/urandom of="$f" bs=512k count=1 conv=notrunc status=none; fi
  done
  mkdir day3
  for i in $(seq 1 20); do { head -c 2621440 /dev/urandom; head -c 2621440 "$WORK/text1m"; } >"day3/f$i"; done
)
btrfs subvolume snapshot -r "$MNT/big3" "$MNT/big3-ro" >/dev/null
sync
$BTRFS_TS manifest "$MNT/big2-ro" >"$WORK/big2-ro.manifest"
$BTRFS_TS manifest "$MNT/big3-ro" >"$WORK/big3-ro.manifest"
umount "$MNT"

CASES=("v1|" "v2-compressed|--compressed-data")
for c in "${CASES[@]}"; do
  name=${c%%|*}
  args=${c#*|}
  echo "== $name" >&2
  # shellcheck disable=SC2086
  for ((i = 1; i <= N; i++)); do send_pair "$name" "$IMG" big $args; done
  stat -c "$name %s" "$WORK/ts-$name.stream" >>"$WORK/sizes"
  check "$name: btrfs-ts stream = kernel stream, byte for byte" cmp "$WORK/ts-$name.stream" "$WORK/kernel-$name.stream"
  rm -f "$WORK/ts-$name.stream" "$WORK/kernel-$name.stream"
done

# incremental cases: name|child (parent `big`)
INCRS=("incr|big2-ro" "incr-heavy|big3-ro")
for c in "${INCRS[@]}"; do
  name=${c%%|*}
  child=${c#*|}
  echo "== $name" >&2
  for ((i = 1; i <= N; i++)); do send_pair "$name" "$IMG" "$child" -p big; done
  stat -c "$name %s" "$WORK/ts-$name.stream" >>"$WORK/sizes"
  stat -c "$name-kernel %s" "$WORK/kernel-$name.stream" >>"$WORK/sizes"
  mount -o loop "$IMG" "$MNT"
  mkdir -p "$MNT/recv-$name"
  btrfs receive -q -f "$WORK/ts-$name.stream" "$MNT/recv-$name"
  check "$name: kernel receive of btrfs-ts send -p big on top of big = $child" $BTRFS_TS manifest "$MNT/recv-$name/$child" --expect "$WORK/$child.manifest"
  umount "$MNT"
  rm -f "$WORK/ts-$name.stream" "$WORK/kernel-$name.stream"
done

OUT=$WORK/section.md
{
  echo "## send: \`btrfs-ts send\` (image file) vs kernel \`btrfs send\` (loop-mounted, read-only)"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/send.sh $N\` — $N runs per side and case (alternating). Source: the kernel's receive of \`streams/big/big-zstd-v2.stream\` into a fresh 6 GiB image (subvolume \`big\`, read-only). Both sides write the stream to a file in \`/tmp\`; the kernel side is \`btrfs send -q [ARGS] -f OUT MNT/big\` with the image mounted read-only before (not timed), btrfs-ts is \`btrfs-ts send -q [ARGS] -f OUT IMG big\`. Before every timed run the side's previous output is removed and an untimed \`sync\` run. The removal matters: \`-f\` on an existing file truncates it inside the timed run, and freeing 0.6 GiB on this ext4 (mounted with \`discard\`) took 0.4–0.55 s of either side's run (2026-11-27, \`--compressed-data\`: the kernel 0.54–0.80 s into a new file, 1.13–1.18 s over its last output). The \`sync\`: neither side's run then writes back the 0.6–1.2 GiB the other side's run left dirty in the page cache (without it the run after the kernel's paid for the kernel's writeback: protocol 1, three alternating runs each, 2026-11-26 13:58: btrfs-ts 6.41 s against the kernel's 4.82 s; with it 4.78 against 4.96 s). Wall time is the median, peak RSS the maximum over the runs."
  echo
  echo "CPU is user+sys of the process (median): for the kernel side the btrfs-progs process, whose system time is the send ioctl itself (the kernel's send runs in the caller's context); for btrfs-ts every thread of node. Under load CPU seconds compare better than wall times."
  echo
  echo "| case | stream size | kernel send | btrfs-ts send | ratio (ts/kernel) | kernel CPU | btrfs-ts CPU | btrfs-progs peak RSS | btrfs-ts peak RSS | btrfs-ts runs (s) | kernel runs (s) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
  for c in "${CASES[@]}"; do
    name=${c%%|*}
    args=${c#*|}
    size=$(awk -v n="$name" '$1==n{print $2}' "$WORK/sizes")
    echo "| $name${args:+ (\`$args\`)} | $(awk -v b="$size" 'BEGIN{printf "%.0f MiB", b/1048576}') | $(secs "kernel-$name") s | $(secs "ts-$name") s | $(ratio "ts-$name" "kernel-$name") | $(cpu_secs "kernel-$name") s | $(cpu_secs "ts-$name") s | $(max_rss "kernel-$name") MiB | $(max_rss "ts-$name") MiB | $(all_ms "ts-$name") | $(all_ms "kernel-$name") |"
  done
  for c in "${INCRS[@]}"; do
    name=${c%%|*}
    child=${c#*|}
    isize=$(awk -v n="$name" '$1==n{print $2}' "$WORK/sizes")
    ksize=$(awk -v n="$name-kernel" '$1==n{print $2}' "$WORK/sizes")
    echo "| $name (\`-p big $child\`, protocol 1) | $(awk -v b="$isize" 'BEGIN{printf "%.1f MiB", b/1048576}') (kernel's $(awk -v b="$ksize" 'BEGIN{printf "%.1f MiB", b/1048576}')) | $(secs "kernel-$name") s | $(secs "ts-$name") s | $(ratio "ts-$name" "kernel-$name") | $(cpu_secs "kernel-$name") s | $(cpu_secs "ts-$name") s | $(max_rss "kernel-$name") MiB | $(max_rss "ts-$name") MiB | $(all_ms "ts-$name") | $(all_ms "kernel-$name") |"
  done
  echo
  echo "Correctness checks (after the timed runs):"
  echo
  checks_table
} >"$OUT"
cat "$OUT"
write_section send "$OUT"
