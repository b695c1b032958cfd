#!/usr/bin/python3
"""The PyTorch side of bench/vs-pytorch.sh: time the authors' own model.

    torch_bench.py FAMILY VARIANT [--batch B] [--threads T] [--runs N]
                   [--warmup N] [--seed S]

The model is built by ../shared/conformance/families/FAMILY.py exactly as
refgen.py builds it (torch.manual_seed(S) first), so its weights are those
of the checkpoint refgen wrote and vtkit runs; the official code is
imported from $VT_REFS at run time. The input is vt-bench's own (the same
seeded N(0,1) numbers), so data-dependent models (token pruning, gates)
take the same decisions on both sides.

Threading is set outside: OMP_WAIT_POLICY, OPENBLAS_NUM_THREADS,
OPENBLAS_CORETYPE; --threads is torch.set_num_threads.

Prints one line of key=value pairs: params, ms (min/median/max of one
forward pass of B images), ms_per_image, build_ms (import and build),
first_ms (build and first pass), rss_mb (peak resident memory)."""
import argparse
import importlib
import os
import resource
import sys
import time

T0 = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))


def vt_bench_input(n):
    """vt-bench's fill_input (cmd/vt-bench.c): a 64-bit LCG, two draws per
    Box-Muller pair, float32. The LCG is jumped ahead in blocks so numpy can
    do it (uint64 arithmetic wraps modulo 2^64 as C's does)."""
    import numpy as np
    a, c = 6364136223846793005, 1442695040888963407
    mask = (1 << 64) - 1
    k = 4096
    mul, add = [], []          # state after j+1 steps: mul[j] * s + add[j]
    m, d = 1, 0
    for _ in range(k):
        m, d = (m * a) & mask, (d * a + c) & mask
        mul.append(m)
        add.append(d)
    mul = np.array(mul, dtype=np.uint64)
    add = np.array(add, dtype=np.uint64)
    draws = n + (n & 1)        # one draw per value, rounded up to pairs
    states = np.empty(draws, dtype=np.uint64)
    s = np.uint64(0x9e3779b97f4a7c15)
    with np.errstate(over="ignore"):
        for i in range(0, draws, k):
            block = mul * s + add
            take = min(k, draws - i)
            states[i:i + take] = block[:take]
            s = block[take - 1]
    u1 = ((states[0::2] >> np.uint64(11)).astype(np.float64) + 1.0) / 9007199254740993.0
    u2 = (states[1::2] >> np.uint64(11)).astype(np.float64) / 9007199254740992.0
    r = np.sqrt(-2 * np.log(u1))
    x = np.empty(draws, dtype=np.float32)
    x[0::2] = r * np.cos(2 * np.pi * u2)
    x[1::2] = r * np.sin(2 * np.pi * u2)
    return x[:n]


def load_family(name):
    """families/NAME.py from ../shared/conformance, set up as refgen does."""
    shared = os.environ.get("VT_SHARED") or os.path.join(HERE, "..", "..", "shared")
    conf = os.path.join(shared, "conformance")
    sys.path.insert(0, conf)
    import refgen  # paths and old-numpy shims the official code needs
    refs = refgen.setup_paths()
    fam = importlib.import_module("families." + name)
    fam.setup(refs)
    return fam


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family")
    ap.add_argument("variant")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    fam = load_family(args.family)
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model, cfg = fam.build(args.variant)
    model.eval()
    size = cfg.get("img_size", 224)
    build_ms = (time.perf_counter() - T0) * 1e3
    n = args.batch * 3 * size * size
    x = torch.from_numpy(vt_bench_input(n).reshape(args.batch, 3, size, size))
    ts = []
    with torch.no_grad():
        for i in range(args.warmup + args.runs):
            t = time.perf_counter()
            model(x)
            t = (time.perf_counter() - t) * 1e3
            if i == 0:
                first_ms = build_ms + t
            if i >= args.warmup:
                ts.append(t)
    ts.sort()
    med = ts[len(ts) // 2] if len(ts) % 2 else (ts[len(ts) // 2 - 1] + ts[len(ts) // 2]) / 2
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = sum(p.numel() for p in model.parameters())
    print(f"impl=torch family={args.family} variant={args.variant} batch={args.batch} "
          f"threads={args.threads} size={size} params={params} min_ms={ts[0]:.3f} median_ms={med:.3f} "
          f"max_ms={ts[-1]:.3f} ms_per_image={med / args.batch:.3f} build_ms={build_ms:.1f} "
          f"first_ms={first_ms:.1f} rss_mb={rss:.1f}")


if __name__ == "__main__":
    main()
