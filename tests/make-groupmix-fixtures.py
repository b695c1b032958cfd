#!/usr/bin/python3
"""Make tests/fixtures/groupmix: a small GroupMixFormer built by the
authors' own code (AILab-CVC/GroupMixFormer models/groupmixformer.py)
through the conformance harness's plugin (families/groupmix.py: SyncBN
swapped for BatchNorm2d, weights redrawn so every branch matters, BN
statistics calibrated), so test_groupmix can check the family in a fresh
clone without ../shared.

Needs Debian's python3 with torch and numpy, ../shared/conformance (or
VT_SHARED) for families/groupmix.py, and VT_REFS pointing at the unpacked
official repositories (see ../shared/conformance/README.md). The official
code is imported at run time, never copied here.

Config: smaller than the harness's TINY so the folder stays < 300 KB:
dims 10,20,30,20 (per-head widths 1,2,3,2; every patch embedding changes
width, the last one narrows it), depths 1,1,2,1, mlp ratios 2,1,1,1, 10 classes, 64x64 input (grids 16/8/4/2: the 5x5 and 7x7 kernels
overhang the map from stage 2 on), batch 2, seed 11.

Written:
  checkpoint.pth   {'model': state_dict}, as extract_clean_ckpt.py writes it
  meta.json        refgen-style: config, extras, and "input": the rule
                   below instead of an input.npy
  logits.npy       [2, 10]
  <extra>.npy      every intermediate of the plugin's forward() but
                   s1b0_attn_in (the shared fixtures have it), image 0
                   only (batch axis 1: axis 1 of s1b0_qkv_proxies, else 0)
  attention.npy    [2, 2, 2] vt-sigmap's groupmix `attention` map of both
                   images (see received() below), computed from the
                   official modules' tensors by a forward hook
  attention_128.npy [1, 4, 4] the same for the same weights run at 128x128
                   (input: the rule below for [1, 3, 128, 128])

Input: no file. Element i of the flattened float32 [2, 3, 64, 64] input is
((i * 2654435761) mod 2^32 >> 24) / 64 - 2, exact in float32 and
recomputed by the test.
"""
import os

from fixturelib import HASH_RULE, HERE, empty_dir, finish, hash_input, official_family, save

OUT = os.path.join(HERE, "fixtures", "groupmix")
SEED = 11
SKIP = ("s1b0_attn_in",)   # a plain LayerNorm output: keeps the folder < 300 KB
BATCH = 2
SIZE = 64
SMALL = dict(embedding_dims=[10, 20, 30, 20], serial_depths=[1, 1, 2, 1],
             mlp_ratios=[2, 1, 1, 1], num_classes=10, img_size=SIZE,
             drop_path_rate=0.0)


def received(model, x):
    """Mean attention each token receives in the last block of the last
    stage: the official factorized attention computes
    eff_att = q @ (softmax_N(k)^T @ v) = (q @ softmax_N(k)^T) @ v, so its
    implicit N x N map of head h is A_h = scale * q_h softmax_N(k_h)^T (the
    CRPE term and the non-attention branch are not token-to-token weights).
    map[n] = mean over the 8 heads and the N queries of A_h[q, n]; built
    here as the dense N x N matrix, [B, H, W]."""
    import torch
    att = model.groupmixformer_backbone[-1].gma_stage[-1].att
    got = {}
    hook = att.aggregator.register_forward_hook(lambda m, i, o: got.__setitem__("qkv", o[0]))
    try:
        model(x)
    finally:
        hook.remove()
    q, k = got["qkv"][0].double(), got["qkv"][1].double()     # [B, heads, N, d]
    a = att.scale * q @ k.softmax(dim=2).transpose(-1, -2)    # [B, heads, N(query), N(key)]
    m = a.mean(2).mean(1)                                     # [B, N]
    side = int(round(m.shape[1] ** 0.5))
    return m.reshape(-1, side, side).float().numpy()


def main():
    torch, fam = official_family("groupmix")
    fam.TINY = dict(SMALL)
    torch.manual_seed(SEED)
    model, cfg = fam.build("groupmixformer_s", tiny=True)
    model.eval()
    x = hash_input(BATCH, SIZE)
    with torch.no_grad():
        logits, extras = fam.forward(model, torch.from_numpy(x))
    empty_dir(OUT)
    save(OUT, "logits", logits.float().numpy())
    kept = []
    for name, arr in sorted(extras.items()):
        if name in SKIP:
            continue
        arr = arr[:, :1] if name == "s1b0_qkv_proxies" else arr[:1]
        save(OUT, name, arr)
        kept.append(name)
    with torch.no_grad():
        save(OUT, "attention", received(model, torch.from_numpy(x)))
        save(OUT, "attention_128", received(model, torch.from_numpy(hash_input(1, 128))))
    torch.save(fam.checkpoint(model), os.path.join(OUT, "checkpoint.pth"))
    meta = {
        "family": "groupmix", "variant": "groupmixformer_s", "tiny": True, "seed": SEED,
        "size": SIZE, "batch": BATCH, "config": cfg, "extras": kept,
        "sigmaps": {"attention": "[2,2,2] both images", "attention_128": "[1,4,4] at 128x128"},
        "input": HASH_RULE.format(BATCH, SIZE, SIZE),
        "extras_images": 1,
        "state_dict_keys": len(model.state_dict()), "torch": torch.__version__,
        "params": sum(p.numel() for p in model.parameters()),
    }
    total = finish(OUT, meta)
    print(f"{OUT}: {len(os.listdir(OUT))} files, {total} bytes")


if __name__ == "__main__":
    main()
