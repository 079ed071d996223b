#!/usr/bin/env bash
# btrfs-ts mkfs --rootdir vs mkfs.btrfs --rootdir on a generated >= 1 GiB tree (bench/make-tree.py: mixed
# sizes, text and random data, symlinks, hard links, xattrs; cached in /tmp/btrfs-ts-bench-tree, delete it
# to regenerate). Each run starts without the image file and ends with `sync IMG` (fsync), so both images
# are on disk. Correctness after the runs: btrfs check of both images, and the manifest of the btrfs-ts
# image (kernel loop-mounted) equals the manifest of the source tree. Rewrites the "mkfs" section of
# docs/performance.md. Usage: sudo bench/mkfs.sh [RUNS] [GiB]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
N=${1:-3}
GIB=${2:-1.1}
TREE=/tmp/btrfs-ts-bench-tree
(cd "$REPO" && npm run -s build >/dev/null)
if [ ! -f "$TREE.stamp" ] || [ "$(cat "$TREE.stamp")" != "$GIB" ]; then
  rm -rf "$TREE" "$TREE.stamp"
  /usr/bin/python3 "$BENCH_DIR/make-tree.py" "$TREE/root" "$GIB"
  echo "$GIB" >"$TREE.stamp"
fi
SRC=$TREE/root
bench_workdir mkfs

tar -cf - -C "$SRC" . >/dev/null # source tree in the page cache for both
bytes=$(du -s -B1 --apparent-size "$SRC" | cut -f1)
nfiles=$(find "$SRC" -type f | wc -l)
nall=$(find "$SRC" | wc -l)
echo "== tree: $nfiles files, $nall entries, $bytes bytes" >&2
for ((i = 1; i <= N; i++)); do
  rm -f "$WORK/progs.img" "$WORK/ts.img"
  measure progs sh -c "mkfs.btrfs -q --rootdir '$SRC' '$WORK/progs.img' && sync '$WORK/progs.img'"
  measure ts sh -c "$BTRFS_TS mkfs -q --rootdir '$SRC' '$WORK/ts.img' && sync '$WORK/ts.img'"
done
check "btrfs check (mkfs.btrfs image)" btrfs check "$WORK/progs.img"
check "btrfs check (btrfs-ts image)" btrfs check "$WORK/ts.img"
$BTRFS_TS manifest "$SRC" -o "$WORK/src.manifest"
mount -o loop,ro "$WORK/ts.img" "$MNT"
check "btrfs-ts image, kernel-mounted: manifest = source tree manifest" $BTRFS_TS manifest "$MNT" --expect "$WORK/src.manifest"
umount "$MNT"
size() { echo "$(du -B1 --apparent-size "$1" | cut -f1 | awk '{printf "%.0f", $1/1048576}') / $(du -B1 "$1" | cut -f1 | awk '{printf "%.0f MiB", $1/1048576}')"; }

OUT=$WORK/section.md
{
  echo "## mkfs: \`btrfs-ts mkfs --rootdir\` vs \`mkfs.btrfs --rootdir\`"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/mkfs.sh $N $GIB\` — tree from \`bench/make-tree.py\`: $nfiles regular files, $nall entries, $(awk -v b="$bytes" 'BEGIN{printf "%.2f GiB", b/1073741824}') of file data (mixed sizes 0 B–24 MiB, ~2/3 text, ~1/3 random, symlinks, hard links, xattrs), in the page cache. Each run: no image file yet, \`TOOL --rootdir TREE IMG && sync IMG\`; default options of both tools (no compression). $N runs per tool (alternating); wall time median, peak RSS maximum (of the tool process)."
  echo
  echo "| tool | wall (median) | runs (s) | peak RSS | image size (apparent / allocated) |"
  echo "|---|---:|---|---:|---:|"
  echo "| mkfs.btrfs (btrfs-progs) | $(secs progs) s | $(all_ms progs) | $(max_rss progs) MiB | $(size "$WORK/progs.img") |"
  echo "| btrfs-ts mkfs | $(secs ts) s | $(all_ms ts) | $(max_rss ts) MiB | $(size "$WORK/ts.img") |"
  echo
  echo "Ratio btrfs-ts / mkfs.btrfs: $(ratio ts progs)."
  echo
  checks_table
} >"$OUT"
cat "$OUT"
write_section mkfs "$OUT"
