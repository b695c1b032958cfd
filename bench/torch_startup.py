#!/usr/bin/python3
"""The PyTorch side of bench/startup.sh: from process start to the first
classified image, as a user of the authors' code would do it.

    torch_startup.py FAMILY VARIANT CHECKPOINT META_JSON IMAGE [--threads T]

Imports torch and the official model code ($VT_REFS, through
../shared/conformance/families/FAMILY.py), builds the model with its own
default initialisation (the builder's test re-draws of the weights are
skipped), loads CHECKPOINT the way the authors' loaders do, preprocesses
IMAGE as the model's eval transform (config from refgen's META_JSON:
shorter side to size/crop_pct, center crop, mean/std) and classifies it.

Prints one line: top1 (class index), wall_ns (time.time_ns() when the
result was ready, for the caller to subtract its own start time) and the
time of each stage in ms."""
import argparse
import json
import os
import sys
import time

T0 = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# Builder steps that re-draw weights for the conformance tests; a user's
# model gets the official initialisation and then the checkpoint.
TEST_REDRAWS = ("_randomize", "_init_weights", "_redraw", "_mix_gates")


def eval_image(path, cfg):
    """timm's eval transform with the model's own crop, interpolation and
    mean/std: [1, 3, S, S] float32."""
    import numpy as np
    import torch
    from PIL import Image
    size = cfg.get("img_size", 224)
    img = Image.open(path).convert("RGB")
    short = int(size / cfg.get("crop_pct", 0.875))
    w, h = img.size
    nw, nh = (short, int(short * h / w)) if w < h else (int(short * w / h), short)
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[cfg.get("interpolation", "bicubic")]
    img = img.resize((nw, nh), resample)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    a = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    a = (a - np.array(cfg.get("mean", (0.485, 0.456, 0.406)), np.float32)) / \
        np.array(cfg.get("std", (0.229, 0.224, 0.225)), np.float32)
    return torch.from_numpy(a.transpose(2, 0, 1).copy()).unsqueeze(0)


def load_weights(model, path, family, variant):
    """The checkpoint's weight set, as the authors' loaders pick it."""
    import torch
    ckpt = torch.load(path, map_location="cpu")
    sd = ckpt
    for key in ("state_dict_ema", "model", "state_dict"):
        if isinstance(ckpt, dict) and key in ckpt:
            sd = ckpt[key]
            break
    if family == "stvit" and variant.startswith("swin_"):
        # Microsoft's release layout into timm's Swin, as timm loads it
        from timm.models.swin_transformer import checkpoint_filter_fn
        sd = checkpoint_filter_fn(sd, model)
    missing, _ = model.load_state_dict(sd, strict=False)
    if missing:
        print(f"torch_startup: {variant}: {len(missing)} tensors not in the checkpoint, "
              f"e.g. {missing[0]}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("family", "variant", "checkpoint", "meta", "image"):
        ap.add_argument(a)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    from torch_bench import load_family
    fam = load_family(args.family)
    if args.family != "pale":
        # the official code of every family but our Pale reference builds
        # on timm: imported here, so that "build" is the model alone
        import timm  # noqa: F401
    torch.set_num_threads(args.threads)
    t_import = time.perf_counter()

    for name in TEST_REDRAWS:
        if hasattr(fam, name):
            setattr(fam, name, lambda *a, **k: None)
    model, _ = fam.build(args.variant)
    model.eval()
    t_build = time.perf_counter()

    load_weights(model, args.checkpoint, args.family, args.variant)
    t_load = time.perf_counter()

    with open(args.meta) as f:
        cfg = json.load(f)["config"]
    x = eval_image(args.image, cfg)
    t_image = time.perf_counter()

    with torch.no_grad():
        out = model(x)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    top1 = int(logits[0].argmax())
    wall_ns = time.time_ns()
    t_fwd = time.perf_counter()
    ms = lambda a, b: f"{(b - a) * 1e3:.1f}"
    print(f"impl=torch variant={args.variant} threads={args.threads} top1={top1} wall_ns={wall_ns} "
          f"import_ms={ms(T0, t_import)} build_ms={ms(t_import, t_build)} load_ms={ms(t_build, t_load)} "
          f"image_ms={ms(t_load, t_image)} forward_ms={ms(t_image, t_fwd)}")


if __name__ == "__main__":
    main()
