#!/bin/bash
# Prepares btrfs-progs' own test images for test/image-damaged.test.ts (BTRFS_TS_EXTRA_IMAGES):
#
#   test/tools/prepare-progs-images.sh PROGS OUT
#
# PROGS is a btrfs-progs checkout (a work tree, or a bare git dir: its HEAD is read). It downloads nothing.
# Every image under tests/fuzz-tests/images, tests/fsck-tests/*/ and tests/misc-tests/*/ is turned into a
# raw image OUT/<suite>--<test>--<name>.raw the way progs' tests/common extract_image does it: .raw.xz and
# .tar.xz are decompressed, .img / .img.xz / .btrfs-image (btrfs-image metadumps) restored with
# `btrfs-image -r`. Images whose restore fails are listed in OUT/FAILED with the reason; images a test
# script builds itself are not images here and are not made; symlinks to another test's image are skipped.
set -u
if [ $# -ne 2 ]; then
  echo "usage: $0 PROGS-CHECKOUT OUT-DIR" >&2
  exit 2
fi
progs=$1
out=$2
mkdir -p "$out" || exit 1
tmp=$(mktemp -d /tmp/progs-images-XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

if [ -d "$progs/tests" ]; then
  list() { (cd "$progs" && find tests/fuzz-tests/images tests/fsck-tests tests/misc-tests -type f); }
  get() { cat "$progs/$1"; }
elif git --git-dir="$progs" rev-parse -q --verify HEAD >/dev/null 2>&1; then
  # symlinks (mode 120000) point at another test's image: listed once, under their target
  list() { git --git-dir="$progs" ls-tree -r HEAD -- tests/fuzz-tests/images tests/fsck-tests tests/misc-tests | awk -F'\t' '$1 !~ /^120000/ { print $2 }'; }
  get() { git --git-dir="$progs" show "HEAD:$1"; }
else
  echo "$0: $progs is neither a checkout with tests/ nor a git dir" >&2
  exit 1
fi

: >"$out/FAILED"
made=0
failed=0
while IFS= read -r path; do
  case "$path" in
    *.raw.xz | *.img | *.img.xz | *.tar.xz | *.btrfs-image) ;;
    *) continue ;;
  esac
  rel=${path#tests/}
  rel=${rel/fuzz-tests\/images\//fuzz-tests/}
  name=${rel//\//--}
  name=${name%.xz}
  name=${name%.raw}
  name=${name%.img}
  name=${name%.tar}
  name=${name%.btrfs-image}
  dest="$out/$name.raw"
  [ -s "$dest" ] && { made=$((made + 1)); continue; }
  why=''
  case "$path" in
    *.raw.xz) get "$path" | xz -dc >"$dest" 2>"$tmp/err" || why=$(head -c 300 "$tmp/err") ;;
    *.tar.xz)
      rm -rf "$tmp/t" && mkdir "$tmp/t"
      if get "$path" | tar --no-same-owner -xJ -C "$tmp/t" 2>"$tmp/err"; then
        # each progs tarball holds one sparse raw image (test.img)
        first=$(find "$tmp/t" -type f | head -1)
        if [ -n "$first" ]; then mv "$first" "$dest"; else why='empty tarball'; fi
      else
        why=$(head -c 300 "$tmp/err")
      fi
      ;;
    *)
      case "$path" in
        *.xz) get "$path" | xz -dc >"$tmp/dump" 2>"$tmp/err" ;;
        *) get "$path" >"$tmp/dump" 2>"$tmp/err" ;;
      esac
      if [ $? -ne 0 ]; then
        why=$(head -c 300 "$tmp/err")
      elif ! btrfs-image -r "$tmp/dump" "$dest" >"$tmp/err" 2>&1; then
        why="btrfs-image -r: $(grep -m1 -i 'error\|fail' "$tmp/err" | head -c 300)"
      fi
      ;;
  esac
  if [ -n "$why" ]; then
    rm -f "$dest"
    echo "$path: $why" >>"$out/FAILED"
    failed=$((failed + 1))
  else
    made=$((made + 1))
  fi
done < <(list)
echo "$made images in $out, $failed could not be prepared (listed in $out/FAILED)"
