#!/usr/bin/python3
# Deterministic, highly compressible tree for the compressed receive benchmark (streams/make-big.sh makes
# big/comp-zstd-v2.stream from it): ~1 GiB logical in ~1,400 files — ~1,200 source-like text files
# (1-60 KB), ~150 large logs (2-12 MiB, most of the bytes) and ~50 random blobs (~8% of the bytes, sent as
# plain WRITEs since they do not compress). On a compress=zstd mount the text becomes 128 KiB compressed
# extents at ~5-10x, so the protocol-2 stream is ~200 MB of mostly ENCODED_WRITEs.
# Usage: make-comp-tree.py DIR [GiB]
import os, random, sys

root, gib = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
total = int(gib * (1 << 30))
rng = random.Random(1313)
idents = ("bytenr nritems generation transid offset inode extent leaf node root owner flags csum sector "
          "level key item slot path buf len size ret err ctx trans fs_info block_group").split()
types = "u64 u32 int bool size_t struct_btrfs_key void".split()

def source_pool(n):
    out, depth, size = [], 0, 0
    while size < n:
        r = rng.random()
        pad = "\t" * depth
        if r < 0.1 and depth < 3:
            out.append(f"{pad}if ({rng.choice(idents)} {rng.choice(['<', '==', '!=', '>='])} {rng.choice(idents)}) {{\n")
            depth += 1
        elif r < 0.2 and depth > 0:
            depth -= 1
            out.append("\t" * depth + "}\n")
        elif r < 0.3:
            out.append(f"{pad}/* {' '.join(rng.choice(idents) for _ in range(rng.randrange(3, 10)))} */\n")
        elif r < 0.45:
            out.append(f"{pad}{rng.choice(types)} {rng.choice(idents)} = {rng.choice(idents)}({rng.choice(idents)}, {rng.choice([0, 1, 4096])});\n")
        else:
            out.append(f"{pad}{rng.choice(idents)}->{rng.choice(idents)} = {rng.choice(idents)} + 1;\n")
        size += len(out[-1])
    return "".join(out).encode()

def log_pool(n):
    out, t, seq = [], 1577934245000, 0
    msgs = ["committed transaction {} in {} ms", "read block {} level {}", "allocated chunk at {} length {}",
            "request {} from 10.0.{}.7 ok", "cache hit ratio {}.{}%", "worker {} idle after {} jobs"]
    size = 0
    while size < n:
        t += rng.choice([0, 1, 1, 2, 3, 10, 100])
        seq += 1
        line = (f"2020-01-02T03:{(t // 60000) % 60:02d}:{(t // 1000) % 60:02d}.{t % 1000:03d}Z "
                f"{rng.choice(['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN'])} [{rng.choice(idents[:6])}] "
                + rng.choice(msgs).format(seq, rng.choice([0, 0, 1, 4, 16])) + "\n")
        out.append(line)
        size += len(line)
    return "".join(out).encode()

src, log = source_pool(4 << 20), log_pool(32 << 20)
os.makedirs(root, exist_ok=True)
written = files = 0
while written < total:
    r = rng.random()
    if r < 0.035:
        kind, size = "bin", rng.randrange(256 << 10, 2 << 20)
    elif r < 0.14:
        kind, size = "log", rng.randrange(2 << 20, 12 << 20)
    else:
        kind, size = "c", rng.randrange(1000, 60000)
    size = min(size, total - written)
    d = os.path.join(root, f"{kind}{files % 17:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{files:05d}.{kind}"), "wb") as f:
        if kind == "bin":
            f.write(rng.randbytes(size))
        else:
            pool = log if kind == "log" else src
            left = size
            while left > 0:
                n = min(left, 1 << 20)
                o = rng.randrange(0, len(pool) - n)
                f.write(pool[o:o + n])
                left -= n
    written += size
    files += 1
print(f"make-comp-tree: {files} files, {written} bytes", file=sys.stderr)
