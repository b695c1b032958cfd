#!/usr/bin/python3
"""Make tests/fixtures/sgformer: a tiny SG-Former-S built by the authors'
own code (OliverRensu/SG-Former sgformer.py) with the conformance harness's
shrunken config and seeded weights, so test_sgformer can check the family
in a fresh clone without ../shared.

Needs Debian's python3 with torch and numpy, ../shared/conformance (or
VT_SHARED) for families/sgformer.py, and VT_REFS pointing at the unpacked
official repositories (see ../shared/conformance/README.md). The official
code is imported at run time, never copied here.

Written (kept under 400 KB):
  checkpoint.pth       wrapped as the authors' CheckpointSaver writes it
  meta.json            refgen-style: config, extras, and "input": the rule
                       below instead of an input.npy (600 KB per image)
  logits.npy           [2, 10] for the 2 images
  sigmap_*.npy, realloc_order*_*.npy, stage4.npy, features.npy
                       intermediates of image 0 only ([1, ...])

Input: no file. Element i of the flattened float32 [2, 3, 224, 224] input
is ((i * 2654435761) mod 2^32 >> 24) / 64 - 2, exact in float32 and
recomputed by the test.
"""
import importlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "sgformer")
SEED = 7
BATCH = 2
SIZE = 224
KEEP = ("sigmap_", "realloc_order", "stage4", "features")


def hash_input(batch, size):
    i = np.arange(batch * 3 * size * size, dtype=np.uint64)
    v = ((i * np.uint64(2654435761)) % np.uint64(1 << 32)) >> np.uint64(24)
    return (v.astype(np.float32) / np.float32(64) - np.float32(2)).reshape(batch, 3, size, size)


def main():
    shared = os.environ.get("VT_SHARED") or os.path.join(HERE, "..", "..", "shared")
    conf = os.path.join(shared, "conformance")
    refs = os.environ.get("VT_REFS")
    if not refs or not os.path.isdir(refs):
        sys.exit("set VT_REFS to the unpacked official repositories (../shared/conformance/README.md)")
    sys.path.insert(0, conf)
    import torch
    torch.set_num_threads(2)
    fam = importlib.import_module("families.sgformer")
    fam.setup(refs)
    torch.manual_seed(SEED)
    model, cfg = fam.build("sgformer_s", tiny=True)
    model.eval()
    x = hash_input(BATCH, SIZE)
    with torch.no_grad():
        logits, extras = fam.forward(model, torch.from_numpy(x))
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    np.save(os.path.join(OUT, "logits.npy"), logits.float().numpy())
    kept = []
    for name, arr in sorted(extras.items()):
        if name.startswith(KEEP):
            np.save(os.path.join(OUT, name + ".npy"), np.asarray(arr[:1], dtype=np.float32))
            kept.append(name)
    torch.save(fam.checkpoint(model), os.path.join(OUT, "checkpoint.pth"))
    meta = {
        "family": "sgformer", "variant": "sgformer_s", "tiny": True, "seed": SEED,
        "size": SIZE, "batch": BATCH, "config": cfg, "extras": kept,
        "extras_images": 1,
        "input": "hash: x[i] = ((i * 2654435761) mod 2^32 >> 24) / 64 - 2, float32 [2,3,224,224]",
        "state_dict_keys": len(model.state_dict()), "torch": torch.__version__,
    }
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{OUT}: {len(os.listdir(OUT))} files, {total} bytes")


if __name__ == "__main__":
    main()
