#!/usr/bin/env bash
# Captures real btrfs send streams from the running kernel, plus the oracle outputs next to each:
#   <name>.stream    the stream (`btrfs send`)
#   <name>.dump      `TZ=UTC btrfs receive --dump -f <name>.stream` (installed btrfs-progs)
#   <name>.manifest  `btrfs-ts manifest` of the subvolume the kernel's `btrfs receive` made from it
#   <name>.compsize  `compsize -x` of that subvolume (compressed streams only)
#   index.json       what each stream is and covers
# Usage (as root, after `npx tsc -p .`):  streams/capture.sh [OUTDIR]   (default: the streams/ directory)
# Everything is created in a private temp dir; every mount and loop device is removed on exit.
set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=$(mkdir -p "${1:-$HERE}" && cd "${1:-$HERE}" && pwd)
PY=/usr/bin/python3
GEN="$PY $HERE/gendata.py"
[ "$(id -u)" = 0 ] || { echo "capture.sh: must run as root (mount, mknod, btrfs send)" >&2; exit 1; }
[ -f "$REPO/dist/cli/main.js" ] || { echo "capture.sh: build first: npx tsc -p ." >&2; exit 1; }

WORK=$(mktemp -d /tmp/btrfs-capture.XXXXXX)
MOUNTS=()
cleanup() {
  set +e
  cd /
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}"
  done
  for img in "$WORK"/*.img; do
    [ -e "$img" ] || continue
    losetup -j "$img" | cut -d: -f1 | while read -r dev; do losetup -d "$dev"; done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0='2020-01-02 03:04:05.000000000 UTC'   # every entry of a base tree
T1='2021-06-07 08:09:10.000000000 UTC'   # every entry an incremental change touched
RECORDS=$WORK/records.tsv                # name, protocol, parent, clone sources, features, description
MANIFESTS=$WORK/manifests.tsv            # stream name, received subvolume, manifest file

# newfs NAME [MOUNT-OPTIONS] -> mounts a fresh 1 GiB (sparse) btrfs at $WORK/NAME
newfs() {
  local img=$WORK/$1.img mnt=$WORK/$1
  truncate -s 1G "$img"
  mkfs.btrfs -q -f "$img" >/dev/null
  mkdir -p "$mnt"
  mount -o "loop${2:+,$2}" "$img" "$mnt"
  MOUNTS+=("$mnt")
}

gen() { $GEN "$@"; }

# fix_times DIR TIME [find-args...]: set atime+mtime of matching entries (symlinks themselves, never followed)
fix_times() {
  local dir=$1 t=$2
  shift 2
  find "$dir" "$@" -exec touch -h -d "$t" {} +
}

snap() { btrfs subvolume snapshot -r "$1" "$2" >/dev/null; }

# send NAME PROTO PARENT CLONES FEATURES DESCRIPTION -- btrfs-send-args...
send() {
  local name=$1 proto=$2 parent=$3 clones=$4 features=$5 desc=$6
  shift 7
  echo "== $name" >&2
  btrfs -q send "$@" -f "$OUT/$name.stream"
  TZ=UTC btrfs receive --dump -f "$OUT/$name.stream" >"$OUT/$name.dump"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$proto" "$parent" "$clones" "$features" "$desc" >>"$RECORDS"
}

# receive RECVFS NAME SUBVOL [compsize]: kernel-receive NAME.stream into RECVFS, manifest SUBVOL
receive() {
  local fs=$WORK/$1 name=$2 subvol=$3
  btrfs -q receive -f "$OUT/$name.stream" "$fs"
  manifest "$name" "$subvol" "$fs/$subvol" "$name.manifest"
  if [ "${4:-}" = compsize ]; then
    # compsize reads extents on disk: without a sync, data still in the page cache is not counted
    sync -f "$fs/$subvol"
    compsize -x "$fs/$subvol" >"$OUT/$name.compsize"
  fi
}

# manifest STREAM-NAME SUBVOL DIR FILE: write OUT/FILE and remember which stream/subvolume it belongs to
manifest() {
  node "$REPO/bin/btrfs-ts.js" manifest "$3" -o "$OUT/$4"
  printf '%s\t%s\t%s\n' "$1" "$2" "$4" >>"$MANIFESTS"
}

ACL_HEX=0x02000000010006000000000002000700d2040000040004000000000010000700000000002000040000000000

# ---------------------------------------------------------------------------------------------------
# The base tree: every inode type, odd names, owners, modes, times, xattrs, links, holes, prealloc, clones
populate_base() {
  local d=$1
  cd "$d"
  gen text 1 200000 >text.txt
  gen rand 2 65536 >random.bin
  : >empty
  gen rand 3 4096 >exact-4096
  gen text 4 1000 >inline-1000
  gen text 5 3000 >small-3000
  # holes: data in the middle of a sparse file, a file that is all hole, a trailing hole
  truncate -s 1M sparse
  gen rand 6 16384 | dd of=sparse bs=4096 seek=64 conv=notrunc status=none
  truncate -s 200K hole-only
  gen text 7 5000 >tail-hole
  truncate -s 300000 tail-hole
  # preallocated ranges: inside the file, and beyond EOF with keep-size
  fallocate -l 256K prealloc
  gen rand 8 8192 | dd of=prealloc bs=4096 seek=16 conv=notrunc status=none
  gen text 9 8192 >prealloc-keep
  fallocate --keep-size -o 8192 -l 131072 prealloc-keep
  sync
  # clones: a whole-file reflink, ranges from another file, and a range within the same file
  cp --reflink=always text.txt text-clone.txt
  gen rand 10 131072 >clone-src.bin
  gen text 11 131072 >clone-dst.bin
  sync
  xfs_io -c "reflink clone-src.bin 0 65536 32768" clone-dst.bin >/dev/null
  xfs_io -c "reflink clone-src.bin 98304 8192 16384" clone-dst.bin >/dev/null
  xfs_io -c "reflink clone-dst.bin 0 110592 8192" clone-dst.bin >/dev/null
  # symlinks
  ln -s text.txt link-rel
  ln -s /etc/passwd link-abs
  ln -s does/not/exist link-dangling
  ln -s "$(printf 'long-target-%.0s' {1..80})" link-long
  # hard links: two names in one dir, one across dirs, a file with three names
  mkdir -p links/sub
  gen text 12 2000 >links/hl-a
  ln links/hl-a links/hl-b
  gen text 13 100 >links/three
  ln links/three links/sub/three-2
  ln links/three three-3
  # special files
  mkfifo fifo
  $PY -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'
  mknod chr-null c 1 3
  mknod blk-loop b 7 0
  mknod chr-big c 511 70000
  # odd names
  mkdir names
  echo space >"names/with space"
  echo newline >"names/new"$'\n'"line"
  echo tab >"names/tab"$'\t'"here"
  echo backslash >'names/back\slash'
  echo nonutf8 >"names/"$'\xff\xfe'
  echo latin1 >"names/caf"$'\xe9'
  echo utf8 >"names/caf"$'\xc3\xa9'
  echo long >"names/$(printf 'n%.0s' {1..255})"
  echo dash >"names/-dash"
  local deep=deep i
  for i in $(seq 1 20); do deep="$deep/level-$i-$(printf 'x%.0s' {1..80})"; done
  mkdir -p "$deep"
  echo deep >"$deep/leaf"
  # the directories and files the incremental will rename, replace and delete
  mkdir -p ren/p/c ren/d1 ren/d2 gone empty-dir
  echo A >ren/a
  echo B >ren/b
  echo in-c >ren/p/c/file
  echo X >ren/x
  echo Y >ren/y
  echo d1 >ren/d1/f
  echo d2 >ren/d2/f
  echo gone >gone/file
  echo del >del-file
  # owners and modes (chown before chmod: chown clears setuid/setgid)
  chown 1234:5678 small-3000
  chown 65534:65534 inline-1000
  chown -h 42:43 link-rel
  chmod 4755 small-3000
  chmod 2750 inline-1000
  mkdir sticky setgid-dir
  chmod 1777 sticky
  chmod 2775 setgid-dir
  chmod 0600 exact-4096
  chmod 0000 empty
  chmod 0640 fifo
  chmod 0711 links
  # xattrs: short, binary, empty, long (> one line of printing), on a dir, on a symlink (trusted.*), an ACL
  setfattr -n user.short -v hello text.txt
  setfattr -n user.binary -v 0x00ff0a7f text.txt
  setfattr -n user.empty text.txt
  setfattr -n user.long -v "$(gen text 14 3000)" text.txt
  setfattr -n user.dir -v on-a-dir names
  setfattr -h -n trusted.symlink -v on-a-symlink link-rel
  setfattr -n system.posix_acl_access -v "$ACL_HEX" exact-4096
  setfattr -n user.removed-later -v bye links/hl-a
  setfattr -n user.changed-later -v old links/hl-a
  sync
  fix_times "$d" "$T0"
  touch -h -d '2001-02-03 04:05:06.123456789 UTC' text.txt
  touch -h -d '1960-05-06 07:08:09.987654321 UTC' random.bin
  touch -h -d '1969-12-31 23:59:59.500000000 UTC' inline-1000
  touch -h -d '2300-01-01 00:00:00.000000001 UTC' small-3000
  touch -h -a -d '1999-09-09 09:09:09.000000000 UTC' exact-4096
  touch -h -d '2022-02-22 22:22:22.222222222 UTC' link-dangling
  cd /
}

# The incremental's changes: the rename dance (swaps, a dir moved under its own former child, rename
# over an existing file, a name reused by a different inode), unlink/rmdir, xattr set/change/remove,
# hard links added/removed, truncate both ways, new clones from the parent, chmod/chown/utimes.
modify_incr() {
  local d=$1 stamp=$WORK/stamp.incr
  touch "$stamp"
  sleep 0.1
  cd "$d"
  mv ren/a ren/tmp && mv ren/b ren/a && mv ren/tmp ren/b
  mv ren/p/c ren/c && mv ren/p ren/c/p
  mv ren/x ren/y
  mv ren/d1 ren/dtmp && mv ren/d2 ren/d1 && mv ren/dtmp ren/d2
  rm -r gone
  echo "now a file" >gone
  rm del-file
  rmdir empty-dir
  mv sticky names/sticky-moved
  setfattr -n user.added -v new text.txt
  setfattr -x user.removed-later links/hl-a
  setfattr -n user.changed-later -v new-value links/hl-a
  ln inline-1000 inline-1000.link
  rm links/hl-b
  truncate -s 100000 text.txt
  truncate -s 50000 small-3000
  gen rand 20 4096 | dd of=random.bin bs=4096 seek=3 conv=notrunc status=none
  gen text 21 7000 >>tail-hole
  cp --reflink=always clone-src.bin new-clone.bin
  xfs_io -c "reflink clone-src.bin 16384 32768 16384" random.bin >/dev/null
  rm link-abs && ln -s text-clone.txt link-abs
  mkdir -p newdir/inner
  gen text 22 20000 >newdir/inner/new-file
  mkfifo newdir/fifo2
  chown 4321:8765 clone-dst.bin
  chmod 0755 names
  sync
  find "$d" -cnewer "$stamp" -exec touch -h -d "$T1" {} +
  touch -h -d '1970-01-01 00:00:00.000000000 UTC' newdir/inner/new-file
  touch -h -d '2100-12-31 23:59:59.999999999 UTC' text-clone.txt
  cd /
}

# A tree for compressed extents: 1 MiB compressible with 4K overwrites in the middle, a truncate into
# the middle of a compressed extent, incompressible data, an inline compressed file, a reflinked
# compressed extent, a file mixing both, plus a hole and a preallocated range.
populate_compressed() {
  local d=$1 seed=$2
  cd "$d"
  gen log "$seed" 1048576 >big.log
  gen log $((seed + 1)) 524288 >trunc.log
  gen text $((seed + 2)) 100000 >medium.txt
  gen text $((seed + 3)) 1500 >inline.txt
  gen rand $((seed + 4)) 16384 >random.bin
  gen log $((seed + 5)) 200000 >mixed
  gen rand $((seed + 6)) 12288 >>mixed
  sync
  gen rand $((seed + 7)) 4096 | dd of=big.log bs=4096 seek=64 conv=notrunc status=none
  gen rand $((seed + 8)) 8192 | dd of=big.log bs=4096 seek=100 conv=notrunc status=none
  gen log $((seed + 9)) 4096 | dd of=big.log bs=4096 seek=200 conv=notrunc status=none
  truncate -s 300001 trunc.log
  cp --reflink=always medium.txt medium-clone.txt
  truncate -s 256K sparse.log
  gen log $((seed + 10)) 65536 | dd of=sparse.log bs=4096 seek=16 conv=notrunc status=none
  fallocate -l 64K prealloc
  mkdir dir
  ln -s ../big.log dir/link
  setfattr -n user.codec -v "$3" big.log
  sync
  fix_times "$d" "$T0"
  cd /
}

modify_compressed_incr() {
  local d=$1 seed=$2
  cd "$d"
  gen rand $((seed + 20)) 4096 | dd of=big.log bs=4096 seek=10 conv=notrunc status=none
  gen log $((seed + 21)) 131072 >>big.log
  truncate -s 100000 trunc.log
  gen log $((seed + 22)) 300000 >new.log
  xfs_io -c "reflink big.log 131072 0 131072" new.log >/dev/null
  rm medium-clone.txt
  sync
  fix_times "$d" "$T1"
  cd /
}

populate_small() {
  local d=$1 tag=$2
  mkdir -p "$d/dir"
  gen text "$3" 3000 >"$d/dir/$tag.txt"
  echo "$tag" >"$d/hello"
  ln -s dir/"$tag.txt" "$d/link"
  fix_times "$d" "$T0"
}

populate_sample() {
  local d=$1
  mkdir -p "$d/docs" "$d/data/empty-dir"
  gen text 100 40000 >"$d/docs/notes.txt"
  gen log 101 200000 >"$d/data/app.log"
  gen text 102 600 >"$d/docs/small.txt"
  ln -s docs/notes.txt "$d/notes"
  setfattr -n user.comment -v "btrfs-ts sample" "$d/docs/notes.txt"
  chmod 0750 "$d/data"
  fix_times "$d" "$T0"
}

# ---------------------------------------------------------------------------------------------------
echo "capture: kernel $(uname -r), $(btrfs --version), work dir $WORK" >&2
: >"$RECORDS"
: >"$MANIFESTS"

# Uncompressed send side: base + incremental, clone sources, multi-subvolume, no-data
newfs src
S=$WORK/src
btrfs -q subvolume create "$S/base"
populate_base "$S/base"
snap "$S/base" "$S/full"
btrfs -q subvolume snapshot "$S/full" "$S/work"
modify_incr "$S/work"
snap "$S/work" "$S/incr"

btrfs -q subvolume create "$S/other"
gen rand 30 65536 >"$S/other/shared.bin"
gen text 31 40000 >"$S/other/shared.txt"
fix_times "$S/other" "$T0"
snap "$S/other" "$S/clone-src"
btrfs -q subvolume snapshot "$S/clone-src" "$S/cl"
# -c needs a parent (btrfs-progs refuses to guess one for an unrelated subvolume), so clones-v1 is an
# incremental on clone-src that also clones from a second source, the base snapshot `full`
cp --reflink=always "$S/full/random.bin" "$S/cl/whole.bin"
gen text 32 65536 >"$S/cl/ranges.txt"
sync
xfs_io -c "reflink $S/full/text.txt 4096 8192 16384" "$S/cl/ranges.txt" >/dev/null
xfs_io -c "reflink $S/full/clone-src.bin 0 40960 8192" "$S/cl/ranges.txt" >/dev/null
xfs_io -c "reflink $S/clone-src/shared.bin 8192 57344 8192" "$S/cl/ranges.txt" >/dev/null
fix_times "$S/cl" "$T1"
snap "$S/cl" "$S/clones"

for m in m1 m2; do
  btrfs -q subvolume create "$S/$m-rw"
  populate_small "$S/$m-rw" "$m" "${m#m}"
  snap "$S/$m-rw" "$S/$m"
done

F_BASE="mkfile,mkdir,mkfifo,mksock,mknod,symlink,link,set_xattr,write,clone,truncate,chmod,chown,utimes,holes,prealloc,odd-names,long-names,deep-paths,acl"
send full-v1 1 "" "" "$F_BASE" "Full send of the base tree, protocol 1: every inode type, odd names, owners/modes/times (pre-1970, far future, ns), xattrs, hard links, holes, prealloc, whole/range clones" \
  -- --proto 1 "$S/full"
send full-v2 2 "" "" "$F_BASE,otime" "Same base tree, protocol 2 without --compressed-data (utimes carry otime)" \
  -- --proto 2 "$S/full"
send incr-v1 1 full-v1 "" "rename,orphan-rename,unlink,rmdir,link,set_xattr,remove_xattr,truncate,clone-from-parent,chmod,chown,utimes,write" \
  "Incremental full->incr: swaps a<->b and d1<->d2, moves a dir under its former child, renames over a file, reuses a deleted dir's name for a file, adds/removes hard links and xattrs, truncates, clones from the parent" \
  -- --proto 1 -p "$S/full" "$S/incr"
send nodata-v1 1 "" "" "update_extent,no-data" "Full send of the base tree with --no-data (UPDATE_EXTENT instead of WRITE/CLONE data)" \
  -- --proto 1 --no-data "$S/full"
send clone-src-v1 1 "" "" "mkfile,write" "Full send of the subvolume that clones-v1 clones from" \
  -- --proto 1 "$S/clone-src"
send clones-v1 1 clone-src-v1 full-v1 "clone,clone-other-subvol,clone-from-parent" "Incremental on clone-src with -c full: whole-file and range clones from a subvolume that is not the parent" \
  -- --proto 1 -p "$S/clone-src" -c "$S/full" "$S/clones"
send multi-v1 1 "" "" "multi-subvolume" "Two subvolumes in one file (m1 then m2), each a complete stream with its own header and END" \
  -- --proto 1 "$S/m1" "$S/m2"
send multi-e-v1 1 "" "" "multi-subvolume,send-e" "Two subvolumes with send -e: one header, no END between the subvolumes" \
  -- --proto 1 -e "$S/m1" "$S/m2"

# Compressed send sides, one per codec; protocol 2 with --compressed-data (ENCODED_WRITE)
seed=200
for codec in zlib lzo zstd; do
  newfs "c-$codec" "compress=$codec"
  C=$WORK/c-$codec
  btrfs -q subvolume create "$C/vol"
  populate_compressed "$C/vol" "$seed" "$codec"
  snap "$C/vol" "$C/$codec"
  send "$codec-v2" 2 "" "" "encoded_write,compression-$codec,partial-extents,inline-compressed,clone,holes,prealloc" \
    "Protocol 2 --compressed-data from a compress=$codec mount: 1 MiB compressible with 4K overwrites, truncate inside a compressed extent, incompressible data, inline compressed file, reflinked compressed extent" \
    -- --proto 2 --compressed-data "$C/$codec"
  seed=$((seed + 100))
done
C=$WORK/c-zstd
btrfs -q subvolume snapshot "$C/zstd" "$C/vol2"
modify_compressed_incr "$C/vol2" 400
snap "$C/vol2" "$C/zstd-incr"
send incr-zstd-v2 2 zstd-v2 "" "encoded_write,compression-zstd,incremental,clone,truncate,unlink" \
  "Incremental on the zstd tree, protocol 2 --compressed-data: overwrite inside a compressed extent, append, truncate, new file with a clone, unlink" \
  -- --proto 2 --compressed-data -p "$C/zstd" "$C/zstd-incr"
btrfs -q subvolume create "$C/sample-rw"
populate_sample "$C/sample-rw"
snap "$C/sample-rw" "$C/sample"
send sample 2 "" "" "encoded_write,compression-zstd,mkfile,mkdir,symlink,set_xattr" \
  "Small protocol-2 zstd stream for the README demo: a few files and dirs, a symlink, an xattr" \
  -- --proto 2 --compressed-data "$C/sample"

# Kernel receive of every stream (chains in order) into fresh filesystems, and their manifests
newfs r1
receive r1 full-v1 full
receive r1 incr-v1 incr
newfs r2
receive r2 full-v2 full
# nodata-v1 is not received: its CLONE commands point at files that got no data, and the kernel refuses
# them ("failed to clone extents ...: Invalid argument"); its oracle is the dump alone.
receive r1 clone-src-v1 clone-src
receive r1 clones-v1 clones
newfs r5
btrfs -q receive -f "$OUT/multi-v1.stream" "$WORK/r5"
manifest multi-v1 m1 "$WORK/r5/m1" multi-v1.m1.manifest
manifest multi-v1 m2 "$WORK/r5/m2" multi-v1.m2.manifest
newfs r6
btrfs -q receive -e -f "$OUT/multi-e-v1.stream" "$WORK/r6"
manifest multi-e-v1 m1 "$WORK/r6/m1" multi-e-v1.m1.manifest
manifest multi-e-v1 m2 "$WORK/r6/m2" multi-e-v1.m2.manifest
for codec in zlib lzo zstd; do
  newfs "r-$codec"
  receive "r-$codec" "$codec-v2" "$codec" compsize
done
receive r-zstd incr-zstd-v2 zstd-incr compsize
receive r-zstd sample sample compsize

# index.json from the records, with each stream's oracle files
$PY - "$RECORDS" "$MANIFESTS" "$OUT" "$(uname -r)" "$(btrfs --version)" <<'EOF'
import json, os, sys
records, manifests, out, kernel, progs = sys.argv[1:6]
received = {}
for line in open(manifests, encoding="utf-8"):
    name, subvol, file = line.rstrip("\n").split("\t")
    received.setdefault(name, []).append({"subvolume": subvol, "manifest": file})
streams = []
for line in open(records, encoding="utf-8"):
    name, proto, parent, clones, features, desc = line.rstrip("\n").split("\t")
    compsize = name + ".compsize"
    streams.append({
        "name": name,
        "file": name + ".stream",
        "bytes": os.path.getsize(os.path.join(out, name + ".stream")),
        "description": desc,
        "protocol": int(proto),
        "parent": parent or None,
        "cloneSources": [c for c in clones.split(",") if c],
        "features": [f for f in features.split(",") if f],
        "dump": name + ".dump",
        "received": received.get(name, []),
        "compsize": compsize if os.path.exists(os.path.join(out, compsize)) else None,
    })
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"kernel": kernel, "btrfsProgs": progs, "dumpTimezone": "UTC", "streams": streams}, f, indent=2)
    f.write("\n")
EOF
echo "capture: done, $(du -shc "$OUT"/*.stream | tail -1 | cut -f1) of streams in $OUT" >&2
