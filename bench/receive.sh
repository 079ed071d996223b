#!/usr/bin/env bash
# btrfs-ts receive (offline, into an image file; it fsyncs at every subvolume commit) vs the kernel's
# btrfs receive into a loop-mounted btrfs followed by sync, on the big streams (streams/make-big.sh): the
# highly compressible comp-zstd-v2 (~200 MB, mostly 128 KiB ENCODED_WRITEs), big-zstd-v2 and big-v1.
# Kernel side per run: fresh sparse file + mkfs.btrfs + mount (timed apart), receive + sync (the measured
# column), umount (timed apart). btrfs-ts side per run: no image yet; receive creates, fills and syncs it.
# Correctness after the runs: btrfs check of both images, and the manifest of our image (kernel
# loop-mounted) equals the manifest of the kernel-received subvolume, which equals streams/big/SUBVOL.manifest
# (SUBVOL: the stream name up to its first dash, `big` or `comp`).
# Each run also copies the stream into a new file with dd + fdatasync: the floor the issue names (the same
# bytes written and made durable once; both receivers write about as much and sync it).
# Also records `btrfs-ts plan --summary` of the zstd stream. Rewrites the "receive" section of
# docs/performance.md. Usage: sudo bench/receive.sh [RUNS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
N=${1:-3}
STREAMS=(comp-zstd-v2 big-zstd-v2 big-v1)
need_big_streams "${STREAMS[@]}"
bench_workdir receive

for s in "${STREAMS[@]}"; do
  f=$REPO/streams/big/$s.stream
  sub=${s%%-*}
  echo "== $s ($(stat -c %s "$f") bytes)" >&2
  cat "$f" >/dev/null
  for ((i = 1; i <= N; i++)); do
    # kernel
    rm -f "$WORK/k.img"
    truncate -s 4G "$WORK/k.img"
    time_only "mkfs-$s" mkfs.btrfs -q -f "$WORK/k.img"
    time_only "mount-$s" mount -o loop "$WORK/k.img" "$MNT"
    measure "kernel-$s" sh -c "btrfs receive -f '$f' '$MNT' && sync"
    if ((i == N)); then
      $BTRFS_TS manifest "$MNT/$sub" -o "$WORK/kernel.manifest"
      check "$s: kernel-received manifest = streams/big/$sub.manifest" $BTRFS_TS manifest "$MNT/$sub" --expect "$REPO/streams/big/$sub.manifest"
    fi
    time_only "umount-$s" umount "$MNT"
    if ((i == N)); then check "$s: btrfs check (kernel image)" btrfs check "$WORK/k.img"; fi
    rm -f "$WORK/k.img"
    # btrfs-ts
    rm -f "$WORK/ts.img"
    measure "ts-$s" $BTRFS_TS receive -q -f "$f" "$WORK/ts.img"
    # the same from a pipe, as `btrfs send | btrfs-ts receive` feeds it
    rm -f "$WORK/ts-pipe.img"
    measure "pipe-$s" sh -c "cat '$f' | $BTRFS_TS receive -q '$WORK/ts-pipe.img'"
    rm -f "$WORK/ts-pipe.img"
    # floor: the stream's bytes copied into a file and synced
    rm -f "$WORK/floor"
    measure "floor-$s" dd if="$f" of="$WORK/floor" bs=1M conv=fdatasync status=none
    rm -f "$WORK/floor"
  done
  echo "$s $(du -B1 --apparent-size "$WORK/ts.img" | cut -f1) $(du -B1 "$WORK/ts.img" | cut -f1)" >>"$WORK/sizes"
  check "$s: btrfs check (btrfs-ts image)" btrfs check "$WORK/ts.img"
  mount -o loop,ro "$WORK/ts.img" "$MNT"
  check "$s: btrfs-ts image, kernel-mounted: manifest = kernel-received manifest" $BTRFS_TS manifest "$MNT/$sub" --expect "$WORK/kernel.manifest"
  umount "$MNT"
  rm -f "$WORK/ts.img"
done

plan_t0=$(date +%s%N)
$BTRFS_TS plan --summary -f "$REPO/streams/big/big-zstd-v2.stream" >"$WORK/plan.txt"
plan_ms=$(( ($(date +%s%N) - plan_t0) / 1000000 ))

OUT=$WORK/section.md
{
  echo "## receive: \`btrfs-ts receive\` (image file) vs kernel \`btrfs receive\` (loop-mounted btrfs)"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/receive.sh $N\` — $N runs per side and stream (alternating), stream in the page cache, images in \`/tmp\` (same filesystem for both). Wall time and btrfs-ts CPU (user+sys, both threads) are medians, peak RSS the maximum over the runs; the kernel's CPU is spent in kernel threads /usr/bin/time cannot see."
  echo
  echo "- **btrfs-ts**: \`btrfs-ts receive -q -f STREAM IMG\` with no IMG yet: creates the image, receives, fsyncs at the commit. Peak RSS is the whole node process."
  echo "- **btrfs-ts from a pipe**: \`sh -c 'cat STREAM | btrfs-ts receive -q IMG'\` (the stream on stdin, as from \`btrfs send |\`); not part of the ratio."
  echo "- **floor**: \`dd if=STREAM of=FILE bs=1M conv=fdatasync\` into a new file on the same file system: the stream's bytes written and synced once, with no processing (each receive writes about as many bytes to its image and syncs them)."
  echo "- **kernel**: \`sh -c 'btrfs receive -f STREAM MNT && sync'\` on a fresh 4 GiB sparse loop image; \`mkfs.btrfs\`, \`mount\` and \`umount\` are timed apart (median shown). Peak RSS is only the btrfs-progs process: the kernel's own memory (page cache, btrfs caches) is not counted."
  echo
  echo "| stream | size | floor (dd + fdatasync) | kernel receive + sync | btrfs-ts receive | ratio (ts/kernel) | btrfs-ts from a pipe | btrfs-ts CPU | kernel mkfs / mount / umount | btrfs-progs peak RSS | btrfs-ts peak RSS | btrfs-ts image (apparent / allocated) | btrfs-ts runs (s) | kernel runs (s) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|---|"
  for s in "${STREAMS[@]}"; do
    size=$(stat -c %s "$REPO/streams/big/$s.stream")
    read -r _ app alloc < <(grep "^$s " "$WORK/sizes")
    echo "| \`$s\` | $(awk -v b="$size" 'BEGIN{printf "%.0f MiB", b/1048576}') | $(secs "floor-$s") s | $(secs "kernel-$s") s | $(secs "ts-$s") s | $(ratio "ts-$s" "kernel-$s") | $(secs "pipe-$s") s | $(cpu_secs "ts-$s") s | $(secs "mkfs-$s") / $(secs "mount-$s") / $(secs "umount-$s") s | $(max_rss "kernel-$s") MiB | $(max_rss "ts-$s") MiB | $(awk -v a="$app" -v b="$alloc" 'BEGIN{printf "%.0f / %.0f MiB", a/1048576, b/1048576}') | $(all_ms "ts-$s") | $(all_ms "kernel-$s") |"
  done
  echo
  echo "Correctness checks (after the timed runs):"
  echo
  checks_table
  echo "Plan of the zstd stream (\`btrfs-ts plan --summary -f streams/big/big-zstd-v2.stream\`, ${plan_ms} ms):"
  echo
  echo '```'
  cat "$WORK/plan.txt"
  echo '```'
} >"$OUT"
cat "$OUT"
write_section receive "$OUT"
