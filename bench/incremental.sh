#!/usr/bin/env bash
# What an incremental costs as the parent grows (issue 11). Kernel-made streams of a subvolume of N small
# files (bench/small-files.py: dirs of 1000, 100-3000 bytes, ~2/3 inline): full, then an incremental
# changing 3 files (-p full), then one changing 1 file (-p the first). Per size, kernel and btrfs-ts
# alternate: the full receive, RUNS receives of the 3-change incremental (kernel: the received snapshot is
# deleted and `subvolume sync`ed between runs; btrfs-ts: a fresh copy of the image holding the full), the
# 1-change incremental; then metadata used (`btrfs filesystem df`, kernel-mounted) of both images, btrfs
# check of ours, manifests of both incrementals in ours and of the last in the kernel's equal to the
# source's (above MANIFEST_MAX files, default 50000: `diff -r` of ours against the kernel's instead). At FULL_N files (default 50000) the full
# receive is run RUNS times on each side. Streams are cached in $BENCH_CACHE (default
# /var/tmp/btrfs-ts-bench; keyed by the generator's hash). Rewrites the "incremental" section of
# docs/performance.md (or BENCH_SECTION). Usage: sudo bench/incremental.sh [RUNS [N...]]   (default: 3 100 50000 300000)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
R=${1:-3}
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 50000 300000)
FULL_N=${FULL_N:-50000}
# manifests hash every file (~0.3 ms of CPU each, minutes at 300k files on a loaded machine): above
# MANIFEST_MAX files the trees are compared with `diff -r` (types, contents, symlink targets) instead
MANIFEST_MAX=${MANIFEST_MAX:-50000}
(cd "$REPO" && npm run -s build >/dev/null)
bench_workdir incremental
MNT2=$WORK/mnt2
mkdir "$MNT2"
CACHE=${BENCH_CACHE:-/var/tmp/btrfs-ts-bench}/incremental-$(sha1sum "$BENCH_DIR/small-files.py" | cut -c1-8)
mkdir -p "$CACHE"

# streams N : $CACHE/nN/{full,inc3,inc1}.stream and the source's manifests, made once
streams() {
  local n=$1 d=$CACHE/n$1
  [ -f "$d/done" ] && return
  echo "== making the streams of $n files (kernel)" >&2
  mkdir -p "$d"
  small_files_source "$n"
  btrfs -q subvolume snapshot -r "$MNT/vol" "$MNT/full"
  $SMALL_FILES change "$MNT/vol" "$n" 3 1
  btrfs -q subvolume snapshot -r "$MNT/vol" "$MNT/inc3"
  $SMALL_FILES change "$MNT/vol" "$n" 1 2
  btrfs -q subvolume snapshot -r "$MNT/vol" "$MNT/inc1"
  btrfs send -q -f "$d/full.stream" "$MNT/full"
  btrfs send -q -f "$d/inc3.stream" -p "$MNT/full" "$MNT/inc3"
  btrfs send -q -f "$d/inc1.stream" -p "$MNT/inc3" "$MNT/inc1"
  if ((n <= MANIFEST_MAX)); then for s in inc3 inc1; do $BTRFS_TS manifest "$MNT/$s" -o "$d/$s.manifest"; done; fi
  umount "$MNT"
  rm -f "$WORK/src.img"
  touch "$d/done"
}

for n in "${SIZES[@]}"; do streams "$n"; done

for n in "${SIZES[@]}"; do
  d=$CACHE/n$n
  echo "== $n files: full $(stat -c %s "$d/full.stream") bytes, inc3 $(stat -c %s "$d/inc3.stream"), inc1 $(stat -c %s "$d/inc1.stream")" >&2
  cat "$d"/*.stream >/dev/null
  kernel_fs "$WORK/k.img" "$MNT"
  measure "kfull-$n" sh -c "btrfs receive -f '$d/full.stream' '$MNT' && sync"
  measure "tsfull-$n" $BTRFS_TS receive -q -f "$d/full.stream" "$WORK/ts.img"
  cp --sparse=always "$WORK/ts.img" "$WORK/ts-full.img"
  for ((i = 1; i <= R; i++)); do
    if ((i > 1)); then
      btrfs -q subvolume delete "$MNT/inc3"
      btrfs -q subvolume sync "$MNT"
      cp --sparse=always "$WORK/ts-full.img" "$WORK/ts.img"
    fi
    sync
    measure "kinc3-$n" sh -c "btrfs receive -f '$d/inc3.stream' '$MNT' && sync"
    measure "tsinc3-$n" $BTRFS_TS receive -q -f "$d/inc3.stream" "$WORK/ts.img"
  done
  rm -f "$WORK/ts-full.img"
  measure "kinc1-$n" sh -c "btrfs receive -f '$d/inc1.stream' '$MNT' && sync"
  measure "tsinc1-$n" $BTRFS_TS receive -q -f "$d/inc1.stream" "$WORK/ts.img"
  echo "k-$n $(meta_used "$MNT")" >>"$WORK/meta"
  check "$n files: btrfs check --readonly (btrfs-ts image)" btrfs check --readonly "$WORK/ts.img"
  mount -o loop,ro "$WORK/ts.img" "$MNT2"
  echo "ts-$n $(meta_used "$MNT2")" >>"$WORK/meta"
  if ((n <= MANIFEST_MAX)); then
    check "$n files: inc1, kernel-received = source (manifest)" $BTRFS_TS manifest "$MNT/inc1" --expect "$d/inc1.manifest"
    for s in inc3 inc1; do check "$n files: $s, btrfs-ts image kernel-mounted = source (manifest)" $BTRFS_TS manifest "$MNT2/$s" --expect "$d/$s.manifest"; done
  else
    for s in inc3 inc1; do check "$n files: $s, btrfs-ts image kernel-mounted = kernel-received (diff -r)" diff -r --no-dereference "$MNT/$s" "$MNT2/$s"; done
  fi
  umount "$MNT2"
  umount "$MNT"
  rm -f "$WORK/k.img"
  echo "ts-$n-size $(du -B1 --apparent-size "$WORK/ts.img" | cut -f1)" >>"$WORK/meta"
  # more full receives at FULL_N, alternating, for a median
  if [ "$n" = "$FULL_N" ]; then
    for ((i = 2; i <= R; i++)); do
      rm -f "$WORK/ts.img"
      kernel_fs "$WORK/k.img" "$MNT"
      measure "kfull-$n" sh -c "btrfs receive -f '$d/full.stream' '$MNT' && sync"
      umount "$MNT"
      rm -f "$WORK/k.img"
      measure "tsfull-$n" $BTRFS_TS receive -q -f "$d/full.stream" "$WORK/ts.img"
    done
  fi
  rm -f "$WORK/ts.img"
done

meta() { awk -v k="$1" '$1==k{print $2}' "$WORK/meta"; }
OUT=$WORK/section.md
small=${SIZES[0]}
{
  # a section of its own (BENCH_SECTION) gets a heading of its own, so the two are told apart in the doc
  echo "## incrementals on big parents (issue 11): cost of a small change vs the parent's size${BENCH_SECTION:+ ($BENCH_SECTION)}"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo ${BENCH_SECTION:+BENCH_SECTION=$BENCH_SECTION }bench/incremental.sh $R ${SIZES[*]}\` — kernel-made streams (\`bench/small-files.py\`: N files of 100–3000 bytes in dirs of 1000, about 2/3 inline; \`btrfs send\` of a read-only snapshot, then \`send -p\` of a snapshot after 3 files changed, then of one after 1 more changed; streams cached in \`$CACHE\`). Kernel: \`btrfs receive -f S MNT && sync\` into a loop-mounted 16 GiB sparse image made by \`mkfs.btrfs\`; btrfs-ts: \`btrfs-ts receive -q -f S IMG\`. Kernel and btrfs-ts runs alternate. The 3-change incremental is received $R times per side (kernel: the received snapshot deleted and \`subvolume sync\`ed between runs; btrfs-ts: a fresh copy of the image holding the full); medians. Metadata used: \`btrfs filesystem df\` (Metadata used, kernel-mounted) after full + both incrementals. Trees compared by manifest up to $MANIFEST_MAX files, by \`diff -r\` with the kernel-received ones above."
  echo
  echo "| files | full stream | 3-change incremental: kernel | btrfs-ts | ratio | btrfs-ts ÷ its time on $small files (goal ≤ 1.5) | 1-change: kernel / btrfs-ts | metadata used, kernel / btrfs-ts | ratio (goal ≤ 1.2) | btrfs-ts image | full receive: kernel / btrfs-ts | ratio | btrfs-ts peak RSS (full / incremental) |"
  echo "|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|---:|---|"
  for n in "${SIZES[@]}"; do
    km=$(meta "k-$n"); tm=$(meta "ts-$n")
    echo "| $n | $(mib "$(stat -c %s "$CACHE/n$n/full.stream")") MiB | $(secs "kinc3-$n") s | $(secs "tsinc3-$n") s | $(ratio "tsinc3-$n" "kinc3-$n") | $(ratio "tsinc3-$n" "tsinc3-$small") | $(secs "kinc1-$n") / $(secs "tsinc1-$n") s | $(mib "$km") / $(mib "$tm") MiB | $(awk -v a="$tm" -v b="$km" 'BEGIN{printf "%.2f×", a/b}') | $(mib "$(meta "ts-$n-size")") MiB | $(secs "kfull-$n") / $(secs "tsfull-$n") s | $(ratio "tsfull-$n" "kfull-$n") | $(max_rss "tsfull-$n") / $(max_rss "tsinc3-$n") MiB |"
  done
  echo
  echo "Runs (s):"
  echo
  for n in "${SIZES[@]}"; do echo "- 3-change incremental on $n files: kernel $(runs "kinc3-$n"); btrfs-ts $(runs "tsinc3-$n")"; done
  echo "- full receive of $FULL_N files: kernel $(runs "kfull-$FULL_N"); btrfs-ts $(runs "tsfull-$FULL_N")"
  checks_section
} >"$OUT"
cat "$OUT"
write_section "${BENCH_SECTION:-incremental}" "$OUT"
