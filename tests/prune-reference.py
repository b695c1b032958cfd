#!/usr/bin/python3
"""Reference check for vt-prune topk and fuse on a vit-family model: DeiT
block math in plain torch (a few lines, independent of the C code) runs the
image to block L, keeps the tokens vt-prune kept (read from the boxes of its
output frame), fuses the rest for `fuse`, continues to the head, and
compares the logits with vtkit's by compare.py's bound
(max|got - want| <= 1e-3 max|want| + 1e-5, same top-1).

    prune-reference.py MODEL IMAGES METHOD:PRUNED:LOGITS...

IMAGES holds image frames; each PRUNED (tokens frames from vt-prune --method
METHOD, topk or fuse) and LOGITS (vt-classify --logits of them) holds one
frame per image, in the same order.

It also checks that the kept tokens' values match and, when vt-prune scored
by CLS attention, that they are the top ones by its own (up to float
near-ties).
Exit 1 when a check fails."""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DT = {"F32": "<f4", "I32": "<i4", "F16": "<f2", "BF16": None}


def frames(path):
    """Every frame of a file: [(metadata, {name: array})]."""
    b = open(path, "rb").read()
    pos, out = 0, []
    while pos < len(b):
        n = struct.unpack("<Q", b[pos:pos + 8])[0]
        h = json.loads(b[pos + 8:pos + 8 + n])
        meta = h.pop("__metadata__", {})
        base, end, ts = pos + 8 + n, pos + 8 + n, {}
        for k, v in h.items():
            s, e = v["data_offsets"]
            assert DT[v["dtype"]], v["dtype"]
            ts[k] = np.frombuffer(b[base + s:base + e], DT[v["dtype"]]).reshape(v["shape"])
            end = max(end, base + e)
        out.append((meta, ts))
        pos = end
    return out


def ln(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, 1e-6)


def block(w, i, x, heads):
    """One DeiT block on x [1, t, D]; returns x and the CLS attention row
    (mean over heads) to every other token."""
    p = "blocks.%d." % i
    B, t, D = x.shape
    h = ln(x, w[p + "norm1.weight"], w[p + "norm1.bias"])
    qkv = F.linear(h, w[p + "attn.qkv.weight"], w.get(p + "attn.qkv.bias"))
    q, k, v = qkv.reshape(B, t, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    a = ((q @ k.transpose(-2, -1)) / math.sqrt(D // heads)).softmax(-1)
    x = x + F.linear((a @ v).transpose(1, 2).reshape(B, t, D), w[p + "attn.proj.weight"],
                     w[p + "attn.proj.bias"])
    h = ln(x, w[p + "norm2.weight"], w[p + "norm2.bias"])
    h = F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))
    x = x + F.linear(h, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
    return x, a[0, :, 0, 1:].mean(0)


def until(w, cfg, img, L):
    """Embed and blocks 0..L: tokens [1, t, D] and the CLS attention of the
    patch tokens in block L."""
    dist = 1 if cfg.get("distilled") else 0
    x = F.conv2d(img, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"],
                 stride=cfg["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    pre = [w["cls_token"]] + ([w["dist_token"]] if dist else [])
    x = torch.cat(pre + [x], 1) + w["pos_embed"]
    for i in range(L + 1):
        x, cls = block(w, i, x, cfg["num_heads"])
    return x, cls[dist:].numpy()


def check(w, cfg, x, cls, L, pmeta, pt, logits, method):
    """One image, one reduction: True when every check holds."""
    heads, depth = cfg["num_heads"], cfg["depth"]
    dist = 1 if cfg.get("distilled") else 0
    prefix = 1 + dist
    n = x.shape[1] - prefix
    gw = int(pmeta["grid"].split(",")[1])

    # what vt-prune kept: single-cell boxes; fuse's last token is the fused one
    boxes = pt["boxes"]
    nout = len(boxes)
    kept_rows = nout - 1 if method == "fuse" else nout
    kept = [int(b[1]) * gw + int(b[0]) for b in boxes[:kept_rows]]
    assert all(b[2] - b[0] == 1 and b[3] - b[1] == 1 for b in boxes[:kept_rows]), "kept boxes"
    assert kept == sorted(kept) and len(set(kept)) == kept_rows, "kept tokens in grid order"

    # the same choice by our own CLS attention: top k, ties to the lower index
    order = np.argsort(-cls, kind="stable")
    mine = set(order[:kept_rows].tolist())
    differ = mine.symmetric_difference(kept)
    if kept_rows:
        edge = cls[order[kept_rows - 1]]
        near = all(abs(cls[j] - edge) <= 1e-5 * abs(edge) + 1e-9 for j in differ)
    else:
        near = not differ
    source = pmeta.get("pruned", "").split(";")[-1].split(":")[-1]
    print("# %s %s by %s: kept %d of %d; top-%d by torch's CLS attention: %d differ%s" %
          (pmeta["name"], method, source, kept_rows, n, kept_rows, len(differ),
           "" if not differ else " (near-ties)" if near else " (not near-ties)"))
    ok = near or source != "cls"    # scored by a sigmap or norm: no ranking to check

    # kept tokens equal vtkit's (same block math up to L)
    got_tok = torch.from_numpy(pt["tokens"].astype(np.float32))
    idx = torch.tensor(kept, dtype=torch.long)
    if kept:
        want_tok = x[0, prefix + idx]
        e = (got_tok[:kept_rows] - want_tok).abs().max().item()
        scale = want_tok.abs().max().item()
        print("#   kept tokens: max abs err %.3g (max %.3g)" % (e, scale))
        ok &= e <= 1e-3 * scale + 1e-5

    # continue on the kept tokens (+ the fused one) to the head
    rows = [x[:, :prefix], x[:, prefix + idx]]
    if method == "fuse":
        rest = [j for j in range(n) if j not in set(kept)]
        a = torch.from_numpy(cls[rest].astype(np.float64)).clamp(min=0)
        if a.sum() == 0:
            a = torch.ones_like(a)
        fused = (x[0, prefix + torch.tensor(rest)].double() * a[:, None]).sum(0) / a.sum()
        rows.append(fused.float()[None, None])
        e = (got_tok[-1] - fused.float()).abs().max().item()
        print("#   fused token: max abs err %.3g" % e)
        ok &= e <= 1e-3 * fused.abs().max().item() + 1e-5
    x = torch.cat(rows, 1)
    for i in range(L + 1, depth):
        x, _ = block(w, i, x, heads)
    x = ln(x, w["norm.weight"], w["norm.bias"])
    want = F.linear(x[:, 0], w["head.weight"], w["head.bias"])
    if dist:
        want = (want + F.linear(x[:, 1], w["head_dist.weight"], w["head_dist.bias"])) / 2
    want = want[0].numpy().astype(np.float64)
    got = logits.astype(np.float64)
    err = np.abs(got - want).max()
    bound = 1e-3 * np.abs(want).max() + 1e-5
    print("#   continued logits: max abs err %.3g (bound %.3g), top-1 %d vs %d" %
          (err, bound, got.argmax(), want.argmax()))
    return ok and bool(err <= bound and got.argmax() == want.argmax() and np.isfinite(got).all())


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    (mmeta, mw), = frames(sys.argv[1])
    cfg = json.loads(mmeta["config"])
    w = {k: torch.from_numpy(v.astype(np.float32)) for k, v in mw.items()}
    images = frames(sys.argv[2])
    ok, checked, cache = True, 0, {}
    for case in sys.argv[3:]:
        method, pruned, logits = case.split(":")
        assert method in ("topk", "fuse"), method
        pf, lf = frames(pruned), frames(logits)
        assert len(pf) == len(lf) == len(images), (len(pf), len(lf), len(images))
        for (imeta, it), (pmeta, pt), (lmeta, lt) in zip(images, pf, lf):
            assert imeta["name"] == pmeta["name"] == lmeta["name"]
            L = int(pmeta["block"])
            if (imeta["name"], L) not in cache:
                img = torch.from_numpy(it["image"].astype(np.float32))[None]
                cache[imeta["name"], L] = until(w, cfg, img, L)
            x, cls = cache[imeta["name"], L]
            ok &= check(w, cfg, x, cls, L, pmeta, pt, lt["logits"], method)
            checked += 1
    print("# %d reductions checked: %s" % (checked, "ok" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


main()
