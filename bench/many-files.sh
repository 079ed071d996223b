#!/usr/bin/env bash
# How receive scales with the number of files rather than bytes: synthetic protocol-1 streams
# (bench/make-many-files.mjs: N files of 6000 bytes in 100 dirs) received by btrfs-ts into an image and
# by the kernel into a loop-mounted btrfs (+ sync). One run per size (these are scaling figures, not
# medians). btrfs check of both images; manifest of the btrfs-ts image (kernel-mounted) equals the
# kernel-received one. Rewrites the "many-files" section of docs/performance.md.
# Usage: sudo bench/many-files.sh [N...]   (default: 10000 100000 300000)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 100000 300000)
(cd "$REPO" && npm run -s build >/dev/null)
bench_workdir many
ok() { if "$@" >"$WORK/check.out" 2>&1; then echo ok; else echo FAILED; tail -n 5 "$WORK/check.out" >&2; fi; }

for n in "${SIZES[@]}"; do
  echo "== $n files" >&2
  node "$BENCH_DIR/make-many-files.mjs" "$n" "$WORK/s.stream" 2>/dev/null
  echo "$n $(stat -c %s "$WORK/s.stream")" >>"$WORK/sizes"
  truncate -s 8G "$WORK/k.img"
  mkfs.btrfs -q -f "$WORK/k.img"
  mount -o loop "$WORK/k.img" "$MNT"
  measure "kernel-$n" sh -c "btrfs receive -f '$WORK/s.stream' '$MNT' && sync"
  $BTRFS_TS manifest "$MNT/many" -o "$WORK/k.manifest"
  umount "$MNT"
  rm -f "$WORK/k.img" "$WORK/ts.img"
  measure "ts-$n" $BTRFS_TS receive -q -f "$WORK/s.stream" "$WORK/ts.img"
  c1=$(ok btrfs check "$WORK/ts.img")
  mount -o loop,ro "$WORK/ts.img" "$MNT"
  c2=$(ok $BTRFS_TS manifest "$MNT/many" --expect "$WORK/k.manifest")
  umount "$MNT"
  echo "$n $c1 $c2" >>"$WORK/checks"
  rm -f "$WORK/ts.img" "$WORK/s.stream"
done

OUT=$WORK/section.md
{
  echo "## receive scaling with the number of files"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/many-files.sh ${SIZES[*]}\` — synthetic protocol-1 streams from \`bench/make-many-files.mjs\` (N files of 6000 bytes in 100 directories: MKFILE, RENAME, one WRITE, UTIMES each). One run per size. Kernel: receive into a fresh loop-mounted btrfs + \`sync\`. btrfs-ts with its default metadata cache (32 MiB of decoded tree blocks since the twenty-first session, 8 MiB before; past it clean blocks are dropped and read again, changed ones written early to their new place)."
  echo
  echo "| files | stream | kernel receive + sync | btrfs-ts receive | ratio | btrfs-ts peak RSS | btrfs check | manifest = kernel's |"
  echo "|---:|---:|---:|---:|---:|---:|---|---|"
  for n in "${SIZES[@]}"; do
    size=$(awk -v n="$n" '$1==n{printf "%.0f MiB", $2/1048576}' "$WORK/sizes")
    read -r _ c1 c2 < <(grep "^$n " "$WORK/checks")
    echo "| $n | $size | $(secs "kernel-$n") s | $(secs "ts-$n") s | $(ratio "ts-$n" "kernel-$n") | $(max_rss "ts-$n") MiB | $c1 | $c2 |"
  done
} >"$OUT"
cat "$OUT"
write_section many-files "$OUT"
