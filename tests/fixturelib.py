"""What the tests/make-*-fixtures.py scripts share: a family's official
code imported through ../shared/conformance (never copied here), the hash
input the C tests recompute instead of storing an input.npy, and writing a
fixture folder."""
import importlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
HASH_RULE = "hash: x[i] = ((i * 2654435761) mod 2^32 >> 24) / 64 - 2, float32 [{},3,{},{}]"


def hash_input(batch, size):
    """x[i] = ((i * 2654435761) mod 2^32 >> 24) / 64 - 2, exact in float32,
    as tests/unit/conform.h recomputes it: [batch, 3, size, size]."""
    i = np.arange(batch * 3 * size * size, dtype=np.uint64)
    v = ((i * np.uint64(2654435761)) % np.uint64(1 << 32)) >> np.uint64(24)
    return (v.astype(np.float32) / np.float32(64) - np.float32(2)).reshape(batch, 3, size, size)


def official_family(name):
    """(torch, module) for ../shared/conformance/families/NAME.py (or
    $VT_SHARED's), set up on the official repositories under $VT_REFS."""
    shared = os.environ.get("VT_SHARED") or os.path.join(HERE, "..", "..", "shared")
    sys.path.insert(0, os.path.join(shared, "conformance"))
    import refgen
    refs = refgen.setup_paths()         # exits with a message without VT_REFS
    import torch
    torch.set_num_threads(2)
    fam = importlib.import_module("families." + name)
    fam.setup(refs)
    return torch, fam


def empty_dir(path):
    """path, made or emptied of files."""
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        os.remove(os.path.join(path, f))


def save(out, name, arr):
    """out/name.npy as float32."""
    np.save(os.path.join(out, name + ".npy"), np.asarray(arr, dtype=np.float32))


def finish(out, meta):
    """out/meta.json written; the folder's total bytes."""
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    return sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
