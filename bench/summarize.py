#!/usr/bin/python3
"""Tables from the raw lines of bench/vs-pytorch.sh and bench/startup.sh.

    summarize.py vs-pytorch RAW
    summarize.py startup RAW

A raw line is key=value pairs, and for vtkit's vt-bench lines the JSON
object vt-bench printed after them. Each process contributes its median;
a table cell is the median of those over the rounds."""
import json
import statistics
import sys


def parse(line):
    """key=value pairs, plus the keys of a trailing JSON object."""
    head, brace, tail = line.partition("{")
    rec = dict(kv.split("=", 1) for kv in head.split())
    if brace:
        rec.update(json.loads(brace + tail))
    return rec


def median(values):
    values = [float(v) for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def group(records, key):
    """Records grouped by key(record), in order of first appearance."""
    out = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def vs_pytorch(records):
    rows = group(records, lambda r: (r["variant"], int(r["batch"])))
    print(f"{'model':<30} {'dtype':>5} {'batch':>5} {'thr':>3} {'params(M)':>9} {'GMACs':>7} "
          f"{'vtkit ms/img':>12} {'PyTorch ms/img':>14} {'tune':>4} {'PyTorch/vtkit':>13} "
          f"{'omp':>8} {'blas':>8} {'vtkit RSS':>9} {'PyTorch RSS':>11}")
    for (variant, batch), rs in rows.items():
        tunes = {t: [r for r in rs if r.get("tune") == t] for t in ("omp", "blas")}
        torch_ms = {t: median(r["ms_per_image"] for r in v) for t, v in tunes.items() if v}
        best = min(torch_ms, key=torch_ms.get) if torch_ms else None
        for dtype, vt in group([r for r in rs if r.get("impl") == "vtkit"],
                               lambda r: r.get("dtype", "f32")).items():
            vs_pytorch_row(variant, batch, dtype, vt, rs, tunes, torch_ms, best)


def vs_pytorch_row(variant, batch, dtype, vt, rs, tunes, torch_ms, best):
    """One vtkit dtype of one model and batch against the PyTorch runs."""
    vt_ms = median(r["ms_per_image"] for r in vt)
    torch_any = next((r for r in rs if r.get("impl") == "torch"), {})
    params = int(torch_any.get("params", vt[0]["params"]))
    gmacs = vt[0]["gmacs"] if vt[0]["gmacs"] is not None else float("nan")
    best_ms = torch_ms[best] if best else float("nan")
    print(f"{variant:<30} {dtype:>5} {batch:>5} {vt[0]['threads']:>3} {params / 1e6:>9.2f} "
          f"{gmacs:>7.3f} {vt_ms:>12.2f} {best_ms:>14.2f} {best or '-':>4} "
          f"{best_ms / vt_ms:>12.2f}x {torch_ms.get('omp', float('nan')):>8.2f} "
          f"{torch_ms.get('blas', float('nan')):>8.2f} "
          f"{median(r['peak_rss_mb'] for r in vt):>9.1f} "
          f"{median(r['rss_mb'] for r in tunes.get(best, [])):>11.1f}")


def startup(records):
    rows = group(records, lambda r: r["variant"])
    print(f"{'model':<30} {'thr':>3} {'vtkit ms':>9} {'PyTorch ms':>10} {'PyTorch/vtkit':>13} "
          f"{'import':>7} {'build':>7} {'load':>7} {'image':>7} {'forward':>7} {'top-1':>6}")
    for variant, rs in rows.items():
        vt = [r for r in rs if r["impl"] == "vtkit"]
        pt = [r for r in rs if r["impl"] == "torch"]
        vt_ms, pt_ms = median(r["ms"] for r in vt), median(r["ms"] for r in pt)
        parts = [median(r.get(k) for r in pt) for k in ("import_ms", "build_ms", "load_ms", "image_ms",
                                                         "forward_ms")]
        agree = all(a["top1"] == b["top1"] for a, b in zip(vt, pt))
        print(f"{variant:<30} {vt[0]['threads'] if vt else '-':>3} {vt_ms:>9.0f} {pt_ms:>10.0f} "
              f"{pt_ms / vt_ms:>12.1f}x " + " ".join(f"{p:>7.0f}" for p in parts) +
              f" {'same' if agree else 'DIFF':>6}")
    print("(PyTorch: process start to first result; import, build, load, image and forward "
          "are the medians of its own stages, in ms)")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("vs-pytorch", "startup"):
        sys.exit(__doc__)
    with open(sys.argv[2]) as f:
        records = [parse(line) for line in f if line.strip()]
    (vs_pytorch if sys.argv[1] == "vs-pytorch" else startup)(records)


if __name__ == "__main__":
    main()
