#!/usr/bin/env bash
# A year of backups in one image, shortened (issue 11): a kernel-made subvolume of FILES small files
# (bench/small-files.py fill), then DAYS daily incrementals (small-files.py day: 3 files overwritten, 1
# appended to, 2 created, 1 deleted, 1 renamed), each `btrfs send -p` of the day before. All received
# into one image, day after day: by the kernel (loop-mounted, each receive + sync timed, `btrfs filesystem
# df` after each) and by btrfs-ts (each receive timed; its image kernel-mounted read-only for `btrfs
# filesystem df` after the full, day 1 and every STEP days), alternating. Reports the first and last
# receives (median of the first and last 5 days) and the metadata growth per incremental; btrfs check of
# our image and the last day's manifest on both equal to the source's. Streams are cached in $BENCH_CACHE
# (default /var/tmp/btrfs-ts-bench). Rewrites the "chain" section of docs/performance.md; with X > 1 (each
# day's changes X times over: most leaves copied each day, so every extent in them gains a reference from
# each day) the "chain-xX" section.
# Usage: sudo bench/chain.sh [DAYS [FILES [STEP [X]]]]   (default: 100 10000 10 1)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
DAYS=${1:-100}
FILES=${2:-10000}
STEP=${3:-10}
X=${4:-1}
SECTION=chain
[ "$X" = 1 ] || SECTION=chain-x$X
((DAYS >= 10)) || { echo "chain.sh: DAYS must be at least 10" >&2; exit 2; }
(cd "$REPO" && npm run -s build >/dev/null)
bench_workdir chain
MNT2=$WORK/mnt2
mkdir "$MNT2"
chain_streams "$DAYS" "$FILES" "$X"
cat "$CACHE"/*.stream >/dev/null

kernel_fs "$WORK/k.img" "$MNT"
for ((d = 0; d <= DAYS; d++)); do
  s=$CACHE/$(day "$d").stream
  measure "k-$d" sh -c "btrfs receive -f '$s' '$MNT' && sync"
  echo "k $d $(meta_used "$MNT")" >>"$WORK/meta"
  measure "ts-$d" $BTRFS_TS receive -q -f "$s" "$WORK/ts.img"
  if ((d <= 1 || d % STEP == 0 || d == DAYS)); then
    mount -o loop,ro "$WORK/ts.img" "$MNT2"
    echo "ts $d $(meta_used "$MNT2")" >>"$WORK/meta"
    umount "$MNT2"
  fi
done
check "kernel-received $(day "$DAYS") = source" same_tree "$MNT/$(day "$DAYS")" "$CACHE/last.manifest"
umount "$MNT"
rm -f "$WORK/k.img"
check "btrfs check --readonly (btrfs-ts image)" btrfs check --readonly "$WORK/ts.img"
mount -o loop,ro "$WORK/ts.img" "$MNT"
check "btrfs-ts image kernel-mounted: $(day "$DAYS") = source" same_tree "$MNT/$(day "$DAYS")" "$CACHE/last.manifest"
umount "$MNT"

# med FROM TO PREFIX : median of the receive times of days FROM..TO, in seconds
med() {
  for ((d = $1; d <= $2; d++)); do awk -v l="$3-$d" '$1==l{print $2}' "$RUNS"; done |
    sort -n | awk '{a[NR]=$1} END{printf "%.2f", ((NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2)/1000}'
}
m() { awk -v w="$1" -v d="$2" '$1==w && $2==d{print $3}' "$WORK/meta"; }
# growth per incremental from day 1 to the last day, KiB
growth() { awk -v a="$(m "$1" 1)" -v b="$(m "$1" "$DAYS")" -v n=$((DAYS - 1)) 'BEGIN{printf "%.1f", (b-a)/n/1024}'; }
OUT=$WORK/section.md
{
  echo "## a chain of $DAYS daily incrementals into one image (issue 11)$([ "$X" = 1 ] || echo ", each day's changes ×$X")"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/chain.sh $DAYS $FILES $STEP$([ "$X" = 1 ] || echo " $X")\` — kernel-made streams: a subvolume of $FILES files from \`bench/small-files.py fill\` (100–3000 bytes, dirs of 1000), then $DAYS days of \`small-files.py day$([ "$X" = 1 ] || echo " … $X")\` ($((3 * X)) files overwritten, $X appended to, $((2 * X)) created, $X deleted, $X renamed), a read-only snapshot and \`btrfs send -p\` of the day before each day; cached in \`$CACHE\`. Every stream received into one image per side, in order, kernel and btrfs-ts alternating: kernel \`btrfs receive -f S MNT && sync\` (loop-mounted 16 GiB sparse image from \`mkfs.btrfs\`), btrfs-ts \`btrfs-ts receive -q -f S IMG\`. Metadata used: \`btrfs filesystem df\` (kernel-mounted; btrfs-ts's image mounted read-only after day 1 and every $STEP days). First / last receive: median of days 1–5 / of the last 5 days."
  echo
  echo "| | full receive | first incrementals (days 1–5) | last incrementals (days $((DAYS - 4))–$DAYS) | last ÷ first (goal ≤ 1.5) | metadata used after the full / day 1 / day $DAYS | growth per incremental (day 1 → $DAYS) | btrfs-ts ÷ kernel (goal ≤ 2) | peak RSS |"
  echo "|---|---:|---:|---:|---:|---|---:|---:|---:|"
  for w in k ts; do
    f=$(med 1 5 "$w"); l=$(med $((DAYS - 4)) "$DAYS" "$w")
    [ $w = k ] && name="kernel" || name="btrfs-ts"
    gr=$([ $w = ts ] && awk -v a="$(growth ts)" -v b="$(growth k)" 'BEGIN{ if (b>0) printf "%.2f×", a/b; else print "n/a" }' || echo "")
    rss=$(for ((d = 0; d <= DAYS; d++)); do echo "$w-$d"; done | while read -r l2; do max_rss "$l2"; echo; done | sort -n | tail -n1)
    echo "| $name | $(secs "$w-0") s | $f s | $l s | $(awk -v a="$l" -v b="$f" 'BEGIN{printf "%.2f×", a/b}') | $(mib "$(m "$w" 0)") / $(mib "$(m "$w" 1)") / $(mib "$(m "$w" "$DAYS")") MiB | $(growth "$w") KiB | $gr | $rss MiB |"
  done
  echo
  echo "btrfs-ts metadata used (MiB) by day: $(awk '$1=="ts"{printf "%s%s: %.1f", s, $2, $3/1048576; s=", "}' "$WORK/meta")."
  echo "Kernel: $(awk -v st="$STEP" '$1=="k" && ($2<=1 || $2%st==0){printf "%s%s: %.1f", s, $2, $3/1048576; s=", "}' "$WORK/meta")."
  echo
  echo "btrfs-ts receive (s) by day: $(for ((d = 1; d <= DAYS; d++)); do awk -v l="ts-$d" '$1==l{printf "%.2f ", $2/1000}' "$RUNS"; done)"
  echo
  echo "kernel receive + sync (s) by day: $(for ((d = 1; d <= DAYS; d++)); do awk -v l="k-$d" '$1==l{printf "%.2f ", $2/1000}' "$RUNS"; done)"
  checks_section
} >"$OUT"
cat "$OUT"
write_section "$SECTION" "$OUT"
