#!/usr/bin/python3
"""Make tests/fixtures/dge: small DeiT-DGE, PVT-DGE, DeiT, PVT and deformable
PVT models built by the authors' own classes (StevenGrove/vtpack, through
../shared/conformance/families/dge.py and its CPU stand-in for vtpack's CUDA
kernels) with seeded weights, so test_dge can check the family in a fresh
clone without ../shared.

Needs Debian's python3 with torch and numpy, ../shared/conformance (or
VT_SHARED) and VT_REFS naming the unpacked official repositories (default
/work/refs); nothing of them is copied here. Run from anywhere:

    VT_REFS=/work/refs /usr/bin/python3 tests/make-dge-fixtures.py

The models are smaller than refgen's --tiny ones and reach paths the shared
fixtures do not: 16x16 (DeiT, patch 1) and 32x32 (PVT-DGE) inputs; PVT-DGE
with a stride-1 first patch embedding, so stages 2-4 run on grids (16, 8, 4)
larger than the ones vtpack builds their position embeddings for (4, 2, 1)
and resample them bilinearly, under a *_mixgate variant name; plain and
deformable PVT (first patch 2) built at 32 and run at 16 (meta "size":
pos_embed_size 32, stage 1 resampled down, the others at their own grids);
head dims that are not powers of two; deformable PVT with offsets large
enough to sample between tokens and outside the map. Gates are re-drawn as families/dge.py does
(N(0, 1/C), zero bias); a seed is kept only when every gate's top-2 margin is
at least MIN_MARGIN and all of 4, 2, 1 occur.

Written per folder (about 300 KB in all):
  checkpoint.pth   {'model': state_dict}, as families/dge.py wraps it
  input.npy        float32 [B, 3, S, S], torch.randn
  logits.npy       [B, 10]
  gate_logits[_stageK], gate_map[_stageK], num_queries
                   (gated nets) as refgen writes them, whole batch
  patches_l0, queries_l0 (gated), block_out (DeiT-DGE, last layer only)
                   [1, 1, N, C], stage1..4,
  stage4_cls (PVT; PVT-DGE stages 3-4 only), features: image 0 only
  meta.json        refgen-style: family, variant, size, batch, config, extras
"""
import math
import os

import numpy as np

from fixturelib import HERE, empty_dir, finish, official_family, save
OUT = os.path.join(HERE, "fixtures", "dge")
MIN_MARGIN = 1e-3

PVT_SMALL = dict(img_size=32, patch_size=1, embed_dims=[4, 8, 8, 12], num_heads=[1, 2, 2, 2],
                 mlp_ratios=[2, 2, 2, 2], num_classes=10)
PLAIN_SMALL = dict(PVT_SMALL, patch_size=2)
# name: (kind, variant, constructor keywords, depths, batch, run size, seed)
FIXTURES = {
    "deit_dge": ("deit_dge", "deit_dge_s124_tiny_patch16_256",
                 dict(img_size=16, patch_size=1, embed_dim=12, depth=2, num_heads=2, mlp_ratio=2,
                      num_classes=10), None, 2, 16, 5),
    "pvt_dge": ("pvt_dge", "pvt_dge_s124_small_256_mixgate", PVT_SMALL, [1, 1, 1, 1], 1, 32, 7),
    "deit": ("deit", "deit_small_patch16_256",
             dict(img_size=16, patch_size=1, embed_dim=12, depth=1, num_heads=2, mlp_ratio=2,
                  num_classes=10), None, 1, 16, 3),
    "pvt": ("pvt", "pvt_tiny_256", PLAIN_SMALL, [1, 1, 1, 1], 1, 16, 4),
    "dpvt": ("dpvt", "dpvt_small_256", PLAIN_SMALL, [1, 1, 1, 1], 1, 16, 6),
}


def build(fam, kind, kw, depths):
    """The official class of `kind` with these keywords (as families/dge.py's
    _build_tiny, but with the first patch size free)."""
    import torch.nn as nn
    from functools import partial
    mod = fam._modules()[kind]
    ln = partial(nn.LayerNorm, eps=1e-6)
    kw = dict(kw, qkv_bias=True, norm_layer=ln)
    if kind in ("deit", "deit_dge"):
        if kind == "deit_dge":
            kw["split_sizes"] = [4, 2, 1]
        return mod.VisionTransformer(**kw)
    kw["depths"] = depths
    if kind == "pvt_dge":
        kw["split_sizes"] = [[4, 2, 1]] * 4
    if kind in ("pvt_dge", "pvt"):
        kw["sr_ratios"] = [8, 4, 2, 1]
    if kind == "dpvt":
        kw["num_points"] = [4, 4, 4, 4]
    return mod.PyramidVisionTransformer(**kw)


def gate_ok(extras):
    """Every gate decided by a clear margin, and every granularity used."""
    used, margin = set(), math.inf
    for k, v in extras.items():
        if k.startswith("gate_logits"):
            s = np.sort(v.reshape(-1, v.shape[-1]), axis=-1)
            margin = min(margin, float((s[:, -1] - s[:, -2]).min()))
        if k.startswith("gate_map"):
            used |= set(np.unique(v).astype(int).tolist())
    return margin, used


def make(fam, torch, name, spec):
    kind, variant, kw, depths, batch, size, seed = spec
    for attempt in range(50):
        torch.manual_seed(seed + 1000 * attempt)
        model = build(fam, kind, kw, depths)
        if kind.endswith("_dge"):
            fam._mix_gates(model)
        if kind == "dpvt":
            with torch.no_grad():
                for m in model.modules():
                    if hasattr(m, "offsets"):
                        m.offsets.weight.normal_(0, 0.5)
                        m.offsets.bias.normal_(0, 1.5)
        model.eval()
        cfg = fam._describe(model, kind, variant, fam.VARIANTS[variant]["base"], True,
                            "mixed" if kind.endswith("_dge") else "init")
        model._dge_cfg = cfg
        model._dge_kind = kind
        g = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(batch, 3, size, size, generator=g)
        with torch.no_grad():
            logits, extras = fam.forward(model, x)
        extras = {k: np.asarray(v) for k, v in extras.items()}
        if not kind.endswith("_dge"):
            break
        margin, used = gate_ok(extras)
        if margin >= MIN_MARGIN and used == {1, 2, 4}:
            break
    else:
        raise SystemExit(f"{name}: no seed gave clear gates")
    out = os.path.join(OUT, name)
    empty_dir(out)
    save(out, "input", x.numpy())
    save(out, "logits", logits.float().numpy())
    dropped = {"block_out"} if kind == "deit" else {"stage1", "stage2"} if kind == "pvt_dge" else set()
    per_image = ("block_out", "stage1", "stage2", "stage3", "stage4", "stage4_cls", "features")
    first = extras["patches_l0"][:, 0] == 0 if "patches_l0" in extras else None
    for k, v in sorted(extras.items()):
        if k in dropped:
            continue    # size: plain DeiT's logits and features, PVT-DGE's gates,
                        # queries and stages 3-4 tell enough
        if k == "block_out":
            v = v[-1:, :1]      # the last layer (layer 0 shows in queries_l0)
        elif k in per_image:
            v = v[:1]
        elif k in ("patches_l0", "queries_l0"):
            v = v[first]
        save(out, k, v)
    torch.save(fam.checkpoint(model), os.path.join(out, "checkpoint.pth"))
    meta = {
        "family": "dge", "variant": variant, "tiny": True, "seed": seed + 1000 * attempt,
        "size": size, "batch": batch, "config": cfg,
        "extras": sorted(k for k in extras if k not in dropped),
        "extras_images": {k: 1 for k in per_image + ("patches_l0", "queries_l0") if k in extras},
        "params": sum(p.numel() for p in model.parameters()),
        "state_dict_keys": len(model.state_dict()), "torch": torch.__version__,
    }
    if kind.endswith("_dge"):
        meta["min_gate_margin"] = gate_ok(extras)[0]
    total = finish(out, meta)
    print(f"{name}: {variant} at {size}, batch {batch}, {total} bytes"
          + (f", min gate margin {meta['min_gate_margin']:.3g}" if "min_gate_margin" in meta else ""))


def main():
    torch, fam = official_family("dge")
    for name, spec in FIXTURES.items():
        make(fam, torch, name, spec)


if __name__ == "__main__":
    main()
