#!/usr/bin/python3
# Deterministic benchmark tree for bench/mkfs.sh: ~TARGET bytes in nested dirs, mixed sizes (many small
# files, medium ones, a few large), about 2/3 text-like (compressible) and 1/3 random, plus empty files,
# symlinks, hard links and xattrs. Usage: make-tree.py DIR [GiB]
import os, random, sys

root, gib = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.1
total = int(gib * (1 << 30))
rng = random.Random(777)
words = "alpha beta gamma delta extent inode chunk leaf node tree btrfs mkfs rootdir block group csum".split()
pool = bytearray()
while len(pool) < (8 << 20):
    pool += (" ".join(rng.choice(words) for _ in range(rng.randrange(5, 14))) + f" {len(pool)}\n").encode()
pool = bytes(pool)
sizes = [0, 100, 1000, 3000, 4096, 9000, 16384, 70000, 300000, 1 << 20, 4 << 20, 24 << 20]
weights = [3, 10, 12, 10, 6, 10, 8, 8, 6, 4, 2, 1]
written = files = 0
os.makedirs(root, exist_ok=True)
while written < total:
    d = os.path.join(root, f"d{files % 23:02d}", f"s{files % 7}")
    os.makedirs(d, exist_ok=True)
    size = min(total - written, rng.choices(sizes, weights)[0] + (rng.randrange(0, 4096) if files % 3 else 0))
    kind = "rand" if rng.random() < 0.33 else "text"
    p = os.path.join(d, f"f{files:06d}.{kind}")
    with open(p, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            if kind == "rand":
                f.write(rng.randbytes(n))
            else:
                o = rng.randrange(0, len(pool) - n)
                f.write(pool[o:o + n])
            left -= n
    if files % 50 == 0:
        os.symlink(f"f{files:06d}.{kind}", os.path.join(d, f"l{files:06d}"))
    if files % 97 == 0:
        os.link(p, os.path.join(d, f"h{files:06d}"))
    if files % 61 == 0:
        os.setxattr(p, "user.bench", f"file {files}".encode())
    written += size
    files += 1
for dp, dn, fn in os.walk(root):
    for n in dn + fn:
        os.utime(os.path.join(dp, n), (1577934245, 1577934245), follow_symlinks=False)
os.utime(root, (1577934245, 1577934245))
print(f"make-tree: {files} files, {written} bytes", file=sys.stderr)
