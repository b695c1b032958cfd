#!/usr/bin/python3
"""Make tests/fixtures/stvit: a small STViT-R (semantic tokens on Swin) built
by the authors' own code (changsn/STViT-R models/swin_transformer.py,
models/layers.py) through the conformance harness's plugin
(families/stvit.py: the official config files and model builder, weights
re-drawn widely so the semantic branch moves the logits), so test_stvit and
the vt-sigmap tests can check the family in a fresh clone without ../shared.

Needs Debian's python3 with torch and numpy, ../shared/conformance (or
VT_SHARED) for families/stvit.py, and VT_REFS pointing at the unpacked
official repositories (see ../shared/conformance/README.md). The official
code is imported at run time, never copied here.

Config: the harness's stvit_r_swin_t TINY shape, narrower so the folder
stays < 300 KB: embed_dim 4 (stage widths 4, 8, 16, 32), depths 1,2,6,1
(one semantic group of 6 blocks; stage 2 keeps a shifted-window block),
heads 2,2,2,4, MLP ratio 2, 10 classes. STViT-R only runs at 224x224.
Batch 2, seed 5.

Written:
  checkpoint.pth   {'model': state_dict} as the official save_checkpoint
                   nests it, without the buffers attn_mask and
                   relative_position_index (recomputed by every reader,
                   optional in vtkit; ~250 KB of the state dict otherwise)
  meta.json        refgen-style: config, extras, "extras_images": 1, and
                   "input": the rule below instead of an input.npy
  logits.npy       [2, 10]
  <extra>.npy      the intermediates in EXTRAS for image 0 only ([1, ...]),
                   as families/stvit.py names them (shared/specs/stvit.md):
                   assignment_g0 is the label map vt-sigmap --method
                   semantic draws, recover_attn_g0 the attention its
                   coverage is read from

Input: no file. Element i of the flattened float32 [2, 3, 224, 224] input
is ((i * 2654435761) mod 2^32 >> 24) / 64 - 2, exact in float32 and
recomputed by the tests.
"""
import os

from fixturelib import HASH_RULE, HERE, empty_dir, finish, hash_input, official_family, save

OUT = os.path.join(HERE, "fixtures", "stvit")
SEED = 5
BATCH = 2
SIZE = 224
VARIANT = "stvit_r_swin_t"
SMALL = dict(EMBED_DIM=4, DEPTHS=[1, 2, 6, 1], NUM_HEADS=[2, 2, 2, 4], MLP_RATIO=2.0,
             NUM_CLASSES=10)
EXTRAS = ("assignment_g0", "features", "recover_attn_g0", "s2_blk05", "semantic_tokens_g0",
          "significance", "significance_g0", "stage2_out", "stage3_out")
BUFFERS = ("attn_mask", "relative_position_index")


def main():
    torch, fam = official_family("stvit")
    fam.TINY[VARIANT] = dict(SMALL)
    torch.manual_seed(SEED)
    model, cfg = fam.build(VARIANT, tiny=True)
    model.eval()
    x = hash_input(BATCH, SIZE)
    with torch.no_grad():
        logits, extras = fam.forward(model, torch.from_numpy(x))
    empty_dir(OUT)
    save(OUT, "logits", logits.float().numpy())
    for name in EXTRAS:
        save(OUT, name, extras[name][:1])
    ck = fam.checkpoint(model)
    ck["model"] = {k: v for k, v in ck["model"].items() if k.rsplit(".", 1)[-1] not in BUFFERS}
    torch.save(ck, os.path.join(OUT, "checkpoint.pth"))
    meta = {
        "family": "stvit", "variant": VARIANT, "tiny": True, "seed": SEED,
        "size": SIZE, "batch": BATCH, "config": cfg, "extras": list(EXTRAS),
        "extras_images": 1,
        "input": HASH_RULE.format(BATCH, SIZE, SIZE),
        "dropped_buffers": list(BUFFERS),
        "state_dict_keys": len(ck["model"]), "torch": torch.__version__,
        "params": sum(p.numel() for p in model.parameters()),
    }
    total = finish(OUT, meta)
    print(f"{OUT}: {len(os.listdir(OUT))} files, {total} bytes")


if __name__ == "__main__":
    main()
