#!/usr/bin/python3
"""Write tests/fixtures/sort/{keys,order}.npy: rows of tie-heavy float32
keys and the index order torch.sort (CPU, stable=False) gives them, for
vt_argsort_torch's test. Run with Debian's python3-torch."""
import os
import numpy as np
import torch

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "sort")
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(5)
n, rows = 784, []
for r in range(16):
    kind = r % 4
    if kind == 0:    # few distinct values
        x = torch.randint(0, 3, (n,), generator=g).float()
    elif kind == 1:  # nearest-upsampled 2x2 blocks of a 14x14 map (SG-Former's case)
        x = torch.rand(14, 14, generator=g).repeat_interleave(2, 0).repeat_interleave(2, 1).reshape(-1)
    elif kind == 2:  # upsampled 4x4 blocks with a NaN and a sorted run
        x = torch.rand(7, 7, generator=g).repeat_interleave(4, 0).repeat_interleave(4, 1).reshape(-1)
        x[7] = float("nan")
        x[100:400] = torch.arange(300).float() / 300
    else:            # all equal (deepest recursion without ties broken)
        x = torch.zeros(n)
    rows.append(x)
keys = torch.stack(rows)
order = torch.sort(keys, dim=1).indices.to(torch.int32)
np.save(os.path.join(out, "keys.npy"), keys.numpy().astype(np.float32))
np.save(os.path.join(out, "order.npy"), order.numpy())
