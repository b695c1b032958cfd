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
import os

from fixturelib import HASH_RULE, HERE, empty_dir, finish, hash_input, official_family, save

OUT = os.path.join(HERE, "fixtures", "sgformer")
SEED = 7
BATCH = 2
SIZE = 224
KEEP = ("sigmap_", "realloc_order", "stage4", "features")


def main():
    torch, fam = official_family("sgformer")
    torch.manual_seed(SEED)
    model, cfg = fam.build("sgformer_s", tiny=True)
    model.eval()
    x = hash_input(BATCH, SIZE)
    with torch.no_grad():
        logits, extras = fam.forward(model, torch.from_numpy(x))
    empty_dir(OUT)
    save(OUT, "logits", logits.float().numpy())
    kept = []
    for name, arr in sorted(extras.items()):
        if name.startswith(KEEP):
            save(OUT, name, arr[:1])
            kept.append(name)
    torch.save(fam.checkpoint(model), os.path.join(OUT, "checkpoint.pth"))
    meta = {
        "family": "sgformer", "variant": "sgformer_s", "tiny": True, "seed": SEED,
        "size": SIZE, "batch": BATCH, "config": cfg, "extras": kept,
        "extras_images": 1,
        "input": HASH_RULE.format(BATCH, SIZE, SIZE),
        "state_dict_keys": len(model.state_dict()), "torch": torch.__version__,
    }
    total = finish(OUT, meta)
    print(f"{OUT}: {len(os.listdir(OUT))} files, {total} bytes")


if __name__ == "__main__":
    main()
