#!/usr/bin/python3
"""Time timm's model in PyTorch (the baseline of bench/deit.sh).
    torch_vit.py VARIANT BATCH ITERS TORCH_THREADS GFLOP
Set VT_REFS (timm unpacked) and the threading environment outside."""
import os, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, os.path.join(os.environ["VT_REFS"], "huggingface+pytorch-image-models"))
import torch, timm
variant, batch, iters, threads, gflop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(threads)
model = timm.create_model(variant, pretrained=False).eval()
x = torch.randn(batch, 3, 224, 224)
with torch.no_grad():
    model(x)
    first = time.perf_counter() - t0
    ts = []
    for _ in range(iters):
        s = time.perf_counter()
        model(x)
        ts.append(time.perf_counter() - s)
ts.sort()
med = ts[len(ts) // 2]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"impl=torch batch={batch} threads={threads} ms_per_image={med * 1e3 / batch:.2f} "
      f"images_per_s={batch / med:.2f} gflops={gflop * batch / med:.1f} rss_mb={rss:.1f} "
      f"open_and_first_ms={first * 1e3:.1f}")
