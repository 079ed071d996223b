#!/usr/bin/env bash
# Generates (does not commit) large streams for benchmarks into streams/big/ (gitignored):
#   big/big-zstd-v2.stream  protocol 2 --compressed-data from a compress=zstd mount, >= 1 GiB logical data
#   big/big-v1.stream       protocol 1 of the same snapshot (data uncompressed in the stream: >= 1 GiB)
#   big/big.manifest        btrfs-ts manifest of the sent snapshot (what a receive must reproduce)
#   big/big.compsize        compsize of the sent snapshot
#   big/comp-zstd-v2.stream protocol 2 --compressed-data of a highly compressible snapshot `comp`: ~1 GiB logical
#                           in ~1,400 files (source-like text, large logs, ~8% random blobs), ~200 MB of stream,
#                           almost all of it 128 KiB compressed extents (bench/make-comp-tree.py)
#   big/comp.manifest       btrfs-ts manifest of that snapshot
# Content of `big`: ~1.2 GiB in ~700 files over 40 directories, about two thirds text-like (compressible) and
# one third random, deterministic (fixed seeds). Takes a few minutes. Usage (root): streams/make-big.sh [GiB]
set -euo pipefail
export LC_ALL=C TZ=UTC
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=$HERE/big
GIB=${1:-1.2}
[ "$(id -u)" = 0 ] || { echo "make-big.sh: must run as root" >&2; exit 1; }
mkdir -p "$OUT"

WORK=$(mktemp -d /tmp/btrfs-big.XXXXXX)
MNT=$WORK/mnt
cleanup() {
  set +e
  cd /
  mountpoint -q "$MNT" && umount "$MNT"
  losetup -j "$WORK/fs.img" | cut -d: -f1 | while read -r dev; do losetup -d "$dev"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

truncate -s 6G "$WORK/fs.img"
mkfs.btrfs -q -f "$WORK/fs.img" >/dev/null
mkdir "$MNT"
mount -o loop,compress=zstd "$WORK/fs.img" "$MNT"
btrfs -q subvolume create "$MNT/vol"

echo "make-big: writing ${GIB} GiB of files" >&2
/usr/bin/python3 - "$MNT/vol" "$GIB" <<'EOF'
import os, random, sys
root, gib = sys.argv[1], float(sys.argv[2])
total = int(gib * (1 << 30))
rng = random.Random(4242)
words = ("btrfs send stream receive subvolume snapshot extent inode transid checksum compress zstd lzo "
         "zlib chunk device tree leaf node item key offset generation data metadata system").split()
# a 16 MiB text pool; text files are slices of it at random offsets, so they compress like prose
pool = bytearray()
while len(pool) < (16 << 20):
    pool += (" ".join(rng.choice(words) for _ in range(rng.randrange(6, 16))) + f" {len(pool)}\n").encode()
pool = bytes(pool)
written = 0
i = 0
while written < total:
    d = os.path.join(root, f"dir{i % 40:02d}")
    os.makedirs(d, exist_ok=True)
    kind = "rand" if rng.random() < 0.33 else "text"
    size = min(total - written, rng.choice([4096, 1000, 65536, 300000, 1 << 20, 3 << 20, 5 << 20]) + rng.randrange(0, 4096))
    with open(os.path.join(d, f"f{i:05d}.{kind}"), "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            if kind == "rand":
                f.write(rng.randbytes(n))
            else:
                o = rng.randrange(0, len(pool) - n)
                f.write(pool[o:o + n])
            left -= n
    written += size
    i += 1
print(f"make-big: {i} files, {written} bytes", file=sys.stderr)
EOF
echo "make-big: writing the compressible tree" >&2
btrfs -q subvolume create "$MNT/vol2"
/usr/bin/python3 "$REPO/bench/make-comp-tree.py" "$MNT/vol2"
find "$MNT/vol2" -exec touch -h -d '2020-01-02 03:04:05 UTC' {} +
find "$MNT/vol" -exec touch -h -d '2020-01-02 03:04:05 UTC' {} +
sync
btrfs subvolume snapshot -r "$MNT/vol" "$MNT/big" >/dev/null
btrfs subvolume snapshot -r "$MNT/vol2" "$MNT/comp" >/dev/null

echo "make-big: sending" >&2
time btrfs -q send --proto 2 --compressed-data -f "$OUT/big-zstd-v2.stream" "$MNT/big"
time btrfs -q send --proto 1 -f "$OUT/big-v1.stream" "$MNT/big"
time btrfs -q send --proto 2 --compressed-data -f "$OUT/comp-zstd-v2.stream" "$MNT/comp"
compsize -x "$MNT/big" >"$OUT/big.compsize"
compsize -x "$MNT/comp" >"$OUT/comp.compsize"
node "$REPO/bin/btrfs-ts.js" manifest "$MNT/big" -o "$OUT/big.manifest"
node "$REPO/bin/btrfs-ts.js" manifest "$MNT/comp" -o "$OUT/comp.manifest"
ls -l "$OUT" >&2
cat "$OUT/big.compsize" "$OUT/comp.compsize" >&2
