#!/usr/bin/env bash
# The four checksum types: throughput of each implementation and its candidates (bench/csum-algos.mjs),
# then btrfs-ts mkfs --csum T --rootdir vs mkfs.btrfs --csum T --rootdir on a tree of random data
# (/tmp/btrfs-ts-bench-csum-tree, MiB given; delete it to regenerate). Correctness: btrfs check
# --check-data-csum of every image. Rewrites the "csum" section of docs/performance.md.
# Usage: sudo bench/csum.sh [RUNS] [MiB]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
N=${1:-3}
MB=${2:-256}
TREE=/tmp/btrfs-ts-bench-csum-tree
(cd "$REPO" && npm run -s build >/dev/null)
if [ ! -f "$TREE.stamp" ] || [ "$(cat "$TREE.stamp")" != "$MB" ]; then
  rm -rf "$TREE" "$TREE.stamp"
  mkdir -p "$TREE"
  for ((f = 0; f < MB / 4; f++)); do head -c 4M /dev/urandom >"$TREE/f$f"; done
  echo "$MB" >"$TREE.stamp"
fi
bench_workdir csum
tar -cf - -C "$TREE" . >/dev/null # in the page cache for both tools
ALGOS=$WORK/algos.md
node "$BENCH_DIR/csum-algos.mjs" 64 >"$ALGOS"
TYPES="crc32c xxhash sha256 blake2"
for ((i = 1; i <= N; i++)); do
  for t in $TYPES; do
    rm -f "$WORK/progs-$t.img" "$WORK/ts-$t.img"
    measure "progs-$t" sh -c "mkfs.btrfs -q --csum $t --rootdir '$TREE' '$WORK/progs-$t.img' && sync '$WORK/progs-$t.img'"
    measure "ts-$t" sh -c "$BTRFS_TS mkfs -q --csum $t --rootdir '$TREE' '$WORK/ts-$t.img' && sync '$WORK/ts-$t.img'"
  done
done
for t in $TYPES; do
  check "btrfs check --check-data-csum (mkfs.btrfs --csum $t)" btrfs check --readonly --check-data-csum "$WORK/progs-$t.img"
  check "btrfs check --check-data-csum (btrfs-ts mkfs --csum $t)" btrfs check --readonly --check-data-csum "$WORK/ts-$t.img"
done
OUT=$WORK/section.md
{
  echo "## Checksum algorithms: implementations, and mkfs --csum vs mkfs.btrfs --csum"
  echo
  echo "$(machine_info)"
  echo
  echo "Command: \`sudo bench/csum.sh $N $MB\` (candidates measured after \`npm install --no-save @noble/hashes @node-rs/xxhash\`)."
  echo "Throughput of one implementation hashing 64 MiB of random bytes in pieces, best of 3:"
  echo
  cat "$ALGOS"
  echo
  echo "node:crypto has no BLAKE2b-256: BLAKE2b puts the digest length in its parameter block, so it is not a"
  echo "truncated blake2b512 (test/image-csum.test.ts shows it). hash-wasm serves xxhash64 and BLAKE2b-256 from one"
  echo "dependency without a native addon; @node-rs/xxhash is faster but platform-specific, and xxhash64 is already"
  echo "faster than crc32c here."
  echo
  echo "\`--rootdir\` of $MB MiB of random data in 4 MiB files; each run: no image yet, \`TOOL --csum T --rootdir TREE IMG && sync IMG\`;"
  echo "$N runs per tool and type (alternating); wall time median, peak RSS maximum."
  echo
  echo "| csum | mkfs.btrfs | btrfs-ts mkfs | ratio | peak RSS mkfs.btrfs / btrfs-ts |"
  echo "|---|---:|---:|---:|---:|"
  for t in $TYPES; do
    echo "| $t | $(secs "progs-$t") s | $(secs "ts-$t") s | $(ratio "ts-$t" "progs-$t") | $(max_rss "progs-$t") / $(max_rss "ts-$t") MiB |"
  done
  echo
  checks_table
} >"$OUT"
cat "$OUT"
write_section csum "$OUT"
