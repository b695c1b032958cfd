#!/usr/bin/python3
"""Make tests/fixtures/pale: a small Pale Transformer built by our PyTorch
reference (../shared/conformance/families/pale.py; the authors released no
code) with seeded weights, so test_pale can check the family in a fresh
clone without ../shared.

Needs Debian's python3 with torch and numpy, and ../shared/conformance (or
VT_SHARED) for families/pale.py, which is imported at run time, never copied
here. The reference's TINY config is overridden (module constants, before
build()) to be smaller and to reach paths the shared fixtures do not:
input 44 (maps 11, 6, 3, 2: odd sizes, not multiples of 224), pale sizes
4-4-2-7 (groups of 4,4,3 rows; 6 rows padded to 8; 3 rows in groups of
2,1; a map smaller than the pale), batch 2.

Written (kept under 300 KB):
  checkpoint.pth   {'model': state_dict}, as families/pale.py wraps it
  input.npy        float32 [2, 3, 44, 44], torch.randn with seed SEED + 1
  logits.npy       [2, 10]
  stage1..4.npy, features.npy, row_attention.npy, col_attention.npy
                   intermediates of image 0 only ([1, ...]); the attention
                   maps are of the last block of stage index 1
  row_attention_s2b0.npy, col_attention_s2b0.npy
                   [1, 2, 9, 9]: the same for block 0 of stage index 2
                   (two heads per branch, a 3x3 map in pale groups of 2
                   and 1 rows), for vt-sigmap --method pale --stage 2
  meta.json        refgen-style: config, extras
"""
import os

import numpy as np

from fixturelib import HERE, empty_dir, finish, official_family, save
OUT = os.path.join(HERE, "fixtures", "pale")
SEED = 11
BATCH = 2
SMALL = dict(embed_dims=(8, 16, 16, 24), depths=(1, 2, 1, 1), num_heads=(2, 2, 4, 2),
             pale_size=(4, 4, 2, 7), img_size=44, num_classes=10)


def main():
    torch, fam = official_family("pale")
    fam.TINY = dict(fam.TINY, **SMALL)
    fam.TINY_VARIANT = dict(fam.TINY_VARIANT, pale_tiny={})
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    model, cfg = fam.build("pale_tiny", tiny=True)
    model.eval()
    size = cfg["img_size"]
    g = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(BATCH, 3, size, size, generator=g)
    with torch.no_grad():
        logits, extras = fam.forward(model, x)
        attn = model.stages[2].blocks[0].attn
        attn.record = True
        model.forward_all(x)
        row, col = attn.maps
        attn.record, attn.maps = False, None
    sigmaps = {"row_attention_s2b0": row.numpy(), "col_attention_s2b0": col.numpy()}
    empty_dir(OUT)
    save(OUT, "input", x.numpy())
    save(OUT, "logits", logits.float().numpy())
    for name, arr in sorted(list(extras.items()) + list(sigmaps.items())):
        save(OUT, name, arr[:1])
    torch.save(fam.checkpoint(model), os.path.join(OUT, "checkpoint.pth"))
    meta = {
        "family": "pale", "variant": "pale_tiny", "tiny": True, "seed": SEED,
        "size": size, "batch": BATCH, "config": cfg, "extras": sorted(extras),
        "sigmaps": sorted(sigmaps),
        "extras_images": 1,
        "params": sum(p.numel() for p in model.parameters()),
        "state_dict_keys": len(model.state_dict()), "torch": torch.__version__,
    }
    total = finish(OUT, meta)
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
