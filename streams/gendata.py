#!/usr/bin/python3
"""Deterministic test data for capture.sh / make-big.sh: the same (kind, seed, size) always gives the
same bytes, so re-running the capture gives equivalent streams.

  gendata.py rand SEED SIZE   incompressible bytes
  gendata.py text SEED SIZE   prose-like text (compresses roughly 3:1)
  gendata.py log  SEED SIZE   log-like lines with counters (compresses 10:1 or better)
"""
import random
import sys

WORDS = ("the quick brown fox jumps over lazy dog btrfs send stream receive subvolume snapshot extent "
         "inode transid checksum compress zstd lzo zlib chunk device tree leaf node item key offset "
         "generation data metadata system balance scrub").split()


def main() -> None:
    kind, seed, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    out = sys.stdout.buffer
    left = size
    n = 0
    while left > 0:
        if kind == "rand":
            chunk = rng.randbytes(min(left, 1 << 20))
        elif kind == "text":
            chunk = (" ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 14))) + ".\n").encode()
        elif kind == "log":
            chunk = (f"{n:08d} seed={seed} level=info msg=\"{WORDS[n % 7]} {WORDS[(n * 3) % 11]} ok\"\n").encode()
            n += 1
        else:
            sys.exit(f"unknown kind {kind}")
        chunk = chunk[:left]
        out.write(chunk)
        left -= len(chunk)


main()
