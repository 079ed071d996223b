# Shared helpers for bench/*.sh (sourced, not run). Each benchmark measures wall time and peak RSS per run
# with /usr/bin/time (RSS) around a nanosecond clock (wall), keeps every run, reports the median, and
# rewrites its own section of docs/performance.md.
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
DOC=$REPO/docs/performance.md
# the command as users run it (bin/btrfs-ts.js starts node with its V8 flags: see its first lines)
BTRFS_TS="$REPO/bin/btrfs-ts.js"
export LC_ALL=C TZ=UTC
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# bench_workdir NAME : a scratch directory with a mount point (sets WORK, MNT, RUNS, CHECKS); on exit any
# mount on $WORK/mnt* (MNT and any second mount point a script makes beside it), loop devices of the images
# in it and the directory itself are removed.
bench_workdir() {
  WORK=$(mktemp -d "/tmp/bench-$1.XXXXXX")
  MNT=$WORK/mnt
  mkdir "$MNT"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  RUNS=$WORK/runs
  : >"$RUNS"
  CHECKS=$WORK/checks
  : >"$CHECKS"
}

bench_cleanup() {
  set +e
  local m
  for m in "$WORK"/mnt*; do mountpoint -q "$m" && umount "$m"; done
  for img in "$WORK"/*.img; do
    [ -e "$img" ] && losetup -j "$img" | cut -d: -f1 | while read -r d; do losetup -d "$d"; done
  done
  rm -rf "$WORK"
}

# check LABEL CMD... : records "ok"/"FAILED" in $CHECKS for the correctness table, never aborts the benchmark;
# the tail of a failing command's output goes to $WORK/failures.md and to stderr
check() {
  local label=$1; shift
  if "$@" >"$WORK/check.out" 2>&1; then echo "$label|ok" >>"$CHECKS"; else
    echo "$label|FAILED (see below)" >>"$CHECKS"; { echo "### $label failed"; echo '```'; tail -n 20 "$WORK/check.out"; echo '```'; } >>"$WORK/failures.md"
    echo "CHECK FAILED: $label" >&2; tail -n 20 "$WORK/check.out" >&2
  fi
}

# need_big_streams NAME... : streams/big/NAME.stream must exist (streams/make-big.sh); then builds dist from
# the working tree, so the code measured is the code checked out
need_big_streams() {
  local s
  for s in "$@"; do
    [ -f "$REPO/streams/big/$s.stream" ] || { echo "missing streams/big/$s.stream: run sudo streams/make-big.sh" >&2; exit 1; }
  done
  (cd "$REPO" && npm run -s build >/dev/null)
}

# checks_section : a "Correctness checks:" heading over checks_table (reports of chain.sh, incremental.sh)
checks_section() {
  echo
  echo "Correctness checks:"
  echo
  checks_table
}

# checks_table : the correctness table of $CHECKS, then the output of any failed check
checks_table() {
  echo "| check | result |"
  echo "|---|---|"
  sed 's/^/| /; s/|/ | /2; s/$/ |/' "$CHECKS"
  echo
  if [ -f "$WORK/failures.md" ]; then cat "$WORK/failures.md"; echo; fi
}

need_root() {
  [ "$(id -u)" = 0 ] || { echo "$(basename "$0"): must run as root (loop mounts, kernel receive)" >&2; exit 1; }
  [ -x /usr/bin/time ] || { echo "$(basename "$0"): /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
}

# kernel_fs IMG MOUNTPOINT : a fresh 16 GiB sparse image made by mkfs.btrfs, loop-mounted
kernel_fs() {
  rm -f "$1"
  truncate -s 16G "$1"
  mkfs.btrfs -q -f "$1"
  mount -o loop "$1" "$2"
}

# small_files_source N : $WORK/src.img on $MNT, subvolume vol holding bench/small-files.py's N files
SMALL_FILES="/usr/bin/python3 $BENCH_DIR/small-files.py"
small_files_source() {
  kernel_fs "$WORK/src.img" "$MNT"
  btrfs -q subvolume create "$MNT/vol"
  $SMALL_FILES fill "$MNT/vol" "$1"
}

# meta_used MOUNTPOINT : bytes of metadata used, as `btrfs filesystem df` reports them (the kernel's count)
meta_used() { btrfs filesystem df -b "$1" | awk -F'used=' '/^Metadata/{print $2+0}'; }
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }

# same_tree DIR EXPECTED_MANIFEST : the manifest of DIR equals EXPECTED except the top directory's mtime.
# An incremental whose stream carries no UTIMES for the top directory leaves there the time of the
# receiver's own orphan renames (kernel and btrfs-ts alike): a receive-time value no source can match.
same_tree() {
  local mask='/^\. /s/ mtime=[^ ]+/ mtime=(receive time)/'
  $BTRFS_TS manifest "$1" -o "$WORK/got.manifest" && diff -u <(sed -E "$mask" "$2") <(sed -E "$mask" "$WORK/got.manifest")
}

# measure LABEL CMD... : runs CMD once; appends "LABEL wall_ms peak_rss_kib cpu_ms" to $RUNS (cpu: user+sys of
# CMD and its children, steadier than wall time when other jobs share the machine); stdout of CMD
# goes to /dev/null unless the command redirects itself; stderr to $WORK/LABEL.err. Fails loudly.
measure() {
  local label=$1; shift
  local t0 t1 rss
  t0=$(date +%s%N)
  if ! /usr/bin/time -f '%M %U %S' -o "$WORK/time.out" "$@" >/dev/null 2>>"$WORK/$label.err"; then
    echo "FAILED: $label: $*" >&2; cat "$WORK/$label.err" >&2; exit 1
  fi
  t1=$(date +%s%N)
  read -r rss cpu < <(tail -n1 "$WORK/time.out" | awk '{printf "%d %d\n", $1, ($2 + $3) * 1000}')
  echo "$label $(( (t1 - t0) / 1000000 )) $rss $cpu" >>"$RUNS"
  printf '  %-28s %8.3f s %8d KiB\n' "$label" "$(echo "($t1 - $t0) / 1000000000" | bc -l)" "$rss" >&2
}

# send_pair LABEL IMG SUBVOL [ARGS...] : one timed run of each side's send of SUBVOL (a path inside the
# image) with ARGS (paths in them inside the image too: `-p big`): the kernel's `btrfs send -q ARGS -f
# $WORK/kernel-LABEL.stream` with IMG mounted read-only at $MNT (the mount not timed; ARGS' paths get the
# mount point), then `btrfs-ts send -q ARGS -f $WORK/ts-LABEL.stream IMG SUBVOL`. Each side starts with no
# output file (-f over an old one times its truncation) and no dirty pages of the other's output (sync).
send_pair() {
  local label=$1 img=$2 sub=$3 a
  shift 3
  local kargs=()
  for a in "$@"; do case $a in -*) kargs+=("$a") ;; *) kargs+=("$MNT/$a") ;; esac; done
  mount -o loop,ro "$img" "$MNT"
  rm -f "$WORK/kernel-$label.stream"
  sync
  measure "kernel-$label" btrfs send -q "${kargs[@]}" -f "$WORK/kernel-$label.stream" "$MNT/$sub"
  umount "$MNT"
  rm -f "$WORK/ts-$label.stream"
  sync
  measure "ts-$label" "$BTRFS_TS" send -q "$@" -f "$WORK/ts-$label.stream" "$img" "$sub"
}

# time_only LABEL CMD... : like measure, for steps whose RSS is meaningless (mount, umount, sync).
time_only() {
  local label=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>>"$WORK/$label.err" || { echo "FAILED: $label: $*" >&2; cat "$WORK/$label.err" >&2; exit 1; }
  t1=$(date +%s%N)
  echo "$label $(( (t1 - t0) / 1000000 )) 0" >>"$RUNS"
}

# median_ms LABEL / max_rss LABEL / all_ms LABEL : read back from $RUNS
median_ms() { awk -v l="$1" '$1==l{print $2}' "$RUNS" | sort -n | awk '{a[NR]=$1} END{if(NR==0){print "n/a"; exit} print (NR%2)?a[(NR+1)/2]:int((a[NR/2]+a[NR/2+1])/2)}'; }
max_rss() { awk -v l="$1" '$1==l && $3>m{m=$3} END{printf "%.1f", m/1024}' "$RUNS"; }
all_ms() { awk -v l="$1" '$1==l{printf "%s%.2f", s, $2/1000; s=" / "}' "$RUNS"; }
runs() { awk -v l="$1" '$1==l{printf "%s%.2f", s, $2/1000; s=", "} END{if(!NR||s=="")printf "n/a"}' "$RUNS"; }
median_cpu_ms() { awk -v l="$1" '$1==l && NF>=4{print $4}' "$RUNS" | sort -n | awk '{a[NR]=$1} END{if(NR==0){print "n/a"; exit} print a[int((NR+1)/2)]}'; }
cpu_secs() { local ms; ms=$(median_cpu_ms "$1"); [ "$ms" = n/a ] && echo n/a || awk -v m="$ms" 'BEGIN{printf "%.2f", m/1000}'; }
secs() { local ms; ms=$(median_ms "$1"); [ "$ms" = n/a ] && echo n/a || awk -v m="$ms" 'BEGIN{printf "%.2f", m/1000}'; }
ratio() { awk -v a="$(median_ms "$1")" -v b="$(median_ms "$2")" 'BEGIN{ if (b>0) printf "%.2f×", a/b; else print "n/a" }'; }

machine_info() {
  local mem
  mem=$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)
  echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $mem RAM," \
    "Linux $(uname -r), node $(node --version), $(btrfs --version | head -n1), btrfs-ts $(git -C "$REPO" rev-parse --short HEAD)," \
    "$(date -u +%Y-%m-%d). Load average at start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "(the machine is shared: other jobs running at the same time inflate wall times, btrfs-ts's more than" \
    "the short single-threaded btrfs-progs runs)."
}

# write_section NAME FILE : replaces the block between <!-- bench:NAME --> and <!-- /bench:NAME --> in
# docs/performance.md with FILE (appends the block when absent).
write_section() {
  node "$BENCH_DIR/write-section.mjs" "$DOC" "$1" "$2"
}

# day N : the name of day N's snapshot and stream in a chain (day000, day001, ...)
day() { printf 'day%03d' "$1"; }

# chain_streams DAYS FILES X : sets CACHE to the directory of a chain's kernel-made streams (day000 full,
# then DAYS daily incrementals of bench/small-files.py's changes ×X, each `btrfs send -p` of the day
# before) and the last day's manifest, making them first when they are not there (uses $WORK/src.img
# and $MNT). Shared by chain.sh and delete.sh; cached in $BENCH_CACHE (default /var/tmp/btrfs-ts-bench).
chain_streams() {
  local days=$1 files=$2 x=$3 d
  CACHE=${BENCH_CACHE:-/var/tmp/btrfs-ts-bench}/chain-$files-$days-x$x-$(sha1sum "$BENCH_DIR/small-files.py" | cut -c1-8)
  [ -f "$CACHE/done" ] && return
  echo "== making $days daily streams on $files files (kernel)" >&2
  mkdir -p "$CACHE"
  small_files_source "$files"
  btrfs -q subvolume snapshot -r "$MNT/vol" "$MNT/$(day 0)"
  btrfs send -q -f "$CACHE/$(day 0).stream" "$MNT/$(day 0)"
  for ((d = 1; d <= days; d++)); do
    $SMALL_FILES day "$MNT/vol" "$files" "$d" "$x"
    btrfs -q subvolume snapshot -r "$MNT/vol" "$MNT/$(day "$d")"
    btrfs send -q -f "$CACHE/$(day "$d").stream" -p "$MNT/$(day $((d - 1)))" "$MNT/$(day "$d")"
  done
  $BTRFS_TS manifest "$MNT/$(day "$days")" -o "$CACHE/last.manifest"
  umount "$MNT"
  rm -f "$WORK/src.img"
  touch "$CACHE/done"
}
