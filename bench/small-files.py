#!/usr/bin/python3
# Deterministic trees of small files for bench/incremental.sh, made by the kernel (run inside a
# loop-mounted btrfs):
#   small-files.py fill DIR N          N files in dirs of 1000: sizes 100-3000 bytes (about 2/3 at or below
#                                      the 2048-byte inline limit, the rest one-block regular extents)
#   small-files.py change DIR N K SEED overwrite 64 bytes in the middle of K of those files
#   small-files.py day DIR N DAY [X]   one "daily" change: 3 files overwritten, 1 appended to, 2 created,
#                                      1 deleted, 1 renamed (files chosen by DAY among the first N); X times
#                                      each with X (a busier day: with X = 20 most leaves of a 3000-file
#                                      tree are copied each day)
import os, random, sys


def path(root, i):
    return os.path.join(root, f"d{i // 1000:03d}", f"f{i:06d}")


def content(i, size):
    unit = f"file {i} ".encode()
    return (unit * (size // len(unit) + 1))[:size]


def fill(root, n):
    for i in range(n):
        if i % 1000 == 0:
            os.makedirs(os.path.join(root, f"d{i // 1000:03d}"), exist_ok=True)
        with open(path(root, i), "wb") as f:
            f.write(content(i, 100 + (i * 7919) % 2901))


def overwrite(p, rng):
    if not os.path.exists(p):
        return False
    with open(p, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(size // 2)
        f.write(rng.randbytes(64))
    return True


def change(root, n, k, seed):
    rng = random.Random(seed)
    done = 0
    while done < k:
        done += overwrite(path(root, rng.randrange(n)), rng)


def day(root, n, d, x=1):
    rng = random.Random(1000003 * d)
    for _ in range(3 * x):
        overwrite(path(root, rng.randrange(n)), rng)
    for _ in range(x):
        p = path(root, rng.randrange(n))
        if os.path.exists(p):
            with open(p, "ab") as f:
                f.write(rng.randbytes(rng.randrange(10, 3000)))
    for j in range(2 * x):
        dd = os.path.join(root, f"d{rng.randrange(max(1, n // 1000)):03d}")
        os.makedirs(dd, exist_ok=True)
        with open(os.path.join(dd, f"new-{d}-{j}"), "wb") as f:
            f.write(rng.randbytes(rng.randrange(100, 6000)))
    for _ in range(x):
        p = path(root, rng.randrange(n))
        if os.path.exists(p):
            os.unlink(p)
    for _ in range(x):
        p = path(root, rng.randrange(n))
        if os.path.exists(p):
            os.rename(p, p + f"-r{d}")


cmd, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if cmd == "fill":
    fill(root, n)
elif cmd == "change":
    change(root, n, int(sys.argv[4]), int(sys.argv[5]))
elif cmd == "day":
    day(root, n, int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else 1)
else:
    sys.exit(f"small-files.py: unknown command {cmd}")
