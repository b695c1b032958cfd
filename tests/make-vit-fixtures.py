#!/usr/bin/python3
"""Make the small ViT/DeiT fixtures of tests/fixtures/vit/ (seeded, random
weights) with a few lines of DeiT math in plain torch, independent of the C
code (timm itself is checked through ../shared/conformance).

    /usr/bin/python3 tests/make-vit-fixtures.py [OUTDIR]

Writes per model NAME: NAME.safetensors (a vtkit model file), NAME-input.npy
[B,3,S,S], NAME-logits.npy [B,C], NAME-cls.npy [B,t-1] (last block's CLS
attention, mean over heads), NAME-rollout.npy [B,depth,t-1] (attention
rollout through blocks 0..l: the CLS row without its own column); and "resample-*" for the distilled model run at
a larger image size with its pos_embed resized as timm does."""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures", "vit")
os.makedirs(OUT, exist_ok=True)

MODELS = {
    # name: (arch, config overrides, batch)
    "tiny": ("deit_tiny_patch16_224",
             dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10), 3),
    "dist": ("deit_tiny_distilled_patch16_224",
             dict(img_size=40, patch_size=8, embed_dim=24, depth=2, num_heads=3, num_classes=7), 2),
}


def make_weights(cfg, distilled, seed):
    g = torch.Generator().manual_seed(seed)
    D, P, C, depth = cfg["embed_dim"], cfg["patch_size"], cfg["num_classes"], cfg["depth"]
    H = 4 * D
    n = (cfg["img_size"] // P) ** 2 + 1 + distilled

    def r(*shape, s=0.2):
        return (torch.randn(*shape, generator=g) * s).float()
    w = {"cls_token": r(1, 1, D, s=1.0)}
    if distilled:
        w["dist_token"] = r(1, 1, D, s=1.0)
    w["pos_embed"] = r(1, n, D, s=0.5)
    w["patch_embed.proj.weight"] = r(D, 3, P, P, s=0.05)
    w["patch_embed.proj.bias"] = r(D)
    for i in range(depth):
        b = f"blocks.{i}."
        w[b + "norm1.weight"] = 1 + r(D)
        w[b + "norm1.bias"] = r(D)
        w[b + "attn.qkv.weight"] = r(3 * D, D, s=0.3)
        w[b + "attn.qkv.bias"] = r(3 * D)
        w[b + "attn.proj.weight"] = r(D, D)
        w[b + "attn.proj.bias"] = r(D)
        w[b + "norm2.weight"] = 1 + r(D)
        w[b + "norm2.bias"] = r(D)
        w[b + "mlp.fc1.weight"] = r(H, D)
        w[b + "mlp.fc1.bias"] = r(H)
        w[b + "mlp.fc2.weight"] = r(D, H, s=0.1)
        w[b + "mlp.fc2.bias"] = r(D)
    w["norm.weight"] = 1 + r(D)
    w["norm.bias"] = r(D)
    w["head.weight"] = r(C, D)
    w["head.bias"] = r(C)
    if distilled:
        w["head_dist.weight"] = r(C, D)
        w["head_dist.bias"] = r(C)
    return w


def resample_pos(pos, prefix, new_grid):
    """timm's resample_abs_pos_embed: bicubic, antialias, prefix kept."""
    D = pos.shape[-1]
    old = int(round((pos.shape[1] - prefix) ** 0.5))
    grid = pos[:, prefix:].reshape(1, old, old, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, D)
    return torch.cat([pos[:, :prefix], grid], 1)


def forward(w, cfg, distilled, x):
    """DeiT eval forward; returns logits, the last block's CLS attention and
    every block's attention averaged over heads ([B, t, t] each)."""
    D, P, heads = cfg["embed_dim"], cfg["patch_size"], cfg["num_heads"]
    B = x.shape[0]
    t = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=P)
    t = t.flatten(2).transpose(1, 2)
    pre = [w["cls_token"].expand(B, -1, -1)]
    if distilled:
        pre.append(w["dist_token"].expand(B, -1, -1))
    t = torch.cat(pre + [t], 1)
    prefix = len(pre)
    pos = w["pos_embed"]
    if pos.shape[1] != t.shape[1]:
        pos = resample_pos(pos, prefix, cfg["img_size"] // P)
    t = t + pos
    N = t.shape[1]
    cls, attns = None, []
    for i in range(cfg["depth"]):
        b = f"blocks.{i}."
        h = F.layer_norm(t, (D,), w[b + "norm1.weight"], w[b + "norm1.bias"], 1e-6)
        qkv = F.linear(h, w[b + "attn.qkv.weight"], w[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * (D // heads) ** -0.5).softmax(-1)
        cls = a[:, :, 0, 1:].mean(1)
        attns.append(a.mean(1))
        o = (a @ v).transpose(1, 2).reshape(B, N, D)
        t = t + F.linear(o, w[b + "attn.proj.weight"], w[b + "attn.proj.bias"])
        h = F.layer_norm(t, (D,), w[b + "norm2.weight"], w[b + "norm2.bias"], 1e-6)
        h = F.gelu(F.linear(h, w[b + "mlp.fc1.weight"], w[b + "mlp.fc1.bias"]))
        t = t + F.linear(h, w[b + "mlp.fc2.weight"], w[b + "mlp.fc2.bias"])
    t = F.layer_norm(t, (D,), w["norm.weight"], w["norm.bias"], 1e-6)
    logits = F.linear(t[:, 0], w["head.weight"], w["head.bias"])
    if distilled:
        logits = (logits + F.linear(t[:, 1], w["head_dist.weight"], w["head_dist.bias"])) / 2
    return logits, cls, attns


def rollout(attns):
    """Abnar & Zuidema 2020: R_l = norm(A_l + I) R_(l-1), rows normalized to
    sum 1; for each l the CLS row of R_l without the CLS column, [B, depth, t-1].
    In float64 from the float32 attention."""
    eye = torch.eye(attns[0].shape[-1], dtype=torch.float64)
    r, out = eye, []
    for a in attns:
        a = a.double() + eye
        r = (a / a.sum(-1, keepdim=True)) @ r
        out.append(r[:, 0, 1:])
    return torch.stack(out, 1).float()


def write_safetensors(path, tensors, meta):
    header, off, blobs = {"__metadata__": meta}, 0, []
    for k, v in tensors.items():
        b = v.detach().contiguous().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def config_of(arch, over, distilled):
    cfg = dict(arch=arch, mlp_ratio=4, qkv_bias=True, distilled=distilled, eps=1e-6,
               crop_pct=0.9, interpolation="bicubic",
               mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    cfg.update(over)
    return cfg


torch.manual_seed(0)
for seed, (name, (arch, over, batch)) in enumerate(MODELS.items()):
    distilled = "distilled" in arch
    cfg = config_of(arch, over, distilled)
    w = make_weights(cfg, distilled, seed + 1)
    pre = dict(size=cfg["img_size"], crop_pct=cfg["crop_pct"], interpolation=cfg["interpolation"],
               mean=cfg["mean"], std=cfg["std"])
    meta = {"vt_model": "1", "arch": arch, "family": "vit", "config": json.dumps(cfg),
            "preprocess": json.dumps(pre), "labels": "none", "random": "1",
            "source": "tests/make-vit-fixtures.py seed %d" % (seed + 1),
            "source_sha256": "%064x" % (seed + 1)}
    write_safetensors(os.path.join(OUT, name + ".safetensors"), w, meta)
    S = cfg["img_size"]
    x = torch.randn(batch, 3, S, S, generator=torch.Generator().manual_seed(100 + seed))
    with torch.no_grad():
        logits, cls, attns = forward(w, cfg, distilled, x)
    np.save(os.path.join(OUT, name + "-input.npy"), x.numpy())
    np.save(os.path.join(OUT, name + "-logits.npy"), logits.numpy())
    np.save(os.path.join(OUT, name + "-cls.npy"), cls.numpy())
    np.save(os.path.join(OUT, name + "-rollout.npy"), rollout(attns).numpy())
    if distilled:
        # the same weights run at a larger size: pos_embed resampled 5x5 -> 7x7
        cfg2 = dict(cfg, img_size=56)
        x2 = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(200))
        with torch.no_grad():
            logits2, _, _ = forward(w, cfg2, distilled, x2)
        np.save(os.path.join(OUT, "resample-input.npy"), x2.numpy())
        np.save(os.path.join(OUT, "resample-logits.npy"), logits2.numpy())

# reference values for the resampling ops (test_ops.c)
g = torch.Generator().manual_seed(7)
src = torch.randn(2, 5, 6, generator=g)
ref = {"interp-src": src}
for mode, kw, size in [("nearest", {}, (7, 4)), ("bilinear", dict(align_corners=False), (9, 11)),
                       ("bilinear", dict(align_corners=True), (9, 11)),
                       ("bicubic", dict(align_corners=False), (9, 11)),
                       ("bicubic", dict(align_corners=True), (3, 4)),
                       ("bicubic", dict(align_corners=False, antialias=True), (9, 11)),
                       ("bicubic", dict(align_corners=False, antialias=True), (3, 2))]:
    tag = "%s%s%s-%dx%d" % (mode, "-ac" if kw.get("align_corners") else "",
                            "-aa" if kw.get("antialias") else "", *size)
    ref["interp-" + tag] = F.interpolate(src[None], size=size, mode=mode, **kw)[0]
for k, v in ref.items():
    np.save(os.path.join(OUT, k + ".npy"), v.numpy().astype(np.float32))
print("wrote", OUT)
