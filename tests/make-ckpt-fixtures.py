#!/usr/bin/python3
"""Make the small checkpoints tests/unit/test_ckpt.c reads, with Debian's
python3-torch:  /usr/bin/python3 tests/make-ckpt-fixtures.py [OUTDIR]

Good files (*.pth, *.safetensors) come with <name>.expect.safetensors: the
state dict torch.load gives, in stored dtypes, with "ckpt_wrapper" in its
metadata (and <name>.ema.expect.safetensors / .raw.expect.safetensors for
the --ema choices). Hostile files are listed in hostile.json with a piece
of the error message each must produce. Outputs are deterministic."""
import argparse
import collections
import hashlib
import io
import json
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures", "ckpt")
PWNED = "/tmp/vtkit-ckpt-pwned"      # what the hostile pickles try to create
ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
            torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def path(name):
    return os.path.join(OUT, name)


def write_safetensors(fname, tensors, meta=None):
    """Our own writer (no safetensors package in Debian 12)."""
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for k, t in tensors.items():
        t = t.detach().contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[k] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(fname, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def expect(name, sd, wrapper, suffix=""):
    sd = collections.OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in sd.items())
    write_safetensors(path(name + suffix + ".expect.safetensors"), sd, {"ckpt_wrapper": wrapper})


def save(name, obj, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    data = buf.getvalue()
    with open(path(name), "wb") as f:
        f.write(data)
    return data


def small_sd(seed, prefix=""):
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    sd[prefix + "patch_embed.proj.weight"] = torch.randn(4, 3, 2, 2, generator=g)
    sd[prefix + "patch_embed.proj.bias"] = torch.randn(4, generator=g)
    sd[prefix + "blocks.0.norm1.weight"] = torch.ones(4)
    sd[prefix + "blocks.0.norm1.bias"] = torch.zeros(4)
    sd[prefix + "head.weight"] = torch.randn(5, 4, generator=g)
    sd[prefix + "head.bias"] = torch.randn(5, generator=g)
    sd[prefix + "bn.num_batches_tracked"] = torch.tensor(7)
    return sd


def zinfo(name, method=zipfile.ZIP_STORED):
    """A fixed timestamp keeps the outputs byte-for-byte reproducible."""
    i = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    i.compress_type = method
    return i


def rezip(src, dst, method, force_zip64=False):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", method) as zout:
        for info in zin.infolist():
            with zout.open(zinfo(info.filename, method), "w", force_zip64=force_zip64) as w:
                w.write(zin.read(info.filename))


def zip64_everywhere(entries, dst):
    """A stored zip whose every size and offset sits in ZIP64 extra fields,
    with a ZIP64 end of central directory record and locator."""
    out, central = bytearray(), bytearray()
    for name, data in entries:
        n = name.encode()
        crc = zlib.crc32(data)
        off = len(out)
        ext = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0, crc, 0xffffffff, 0xffffffff, len(n), len(ext))
        out += n + ext + data
        cext = struct.pack("<HHQQQ", 1, 24, len(data), len(data), off)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0, crc, 0xffffffff,
                               0xffffffff, len(n), len(cext), 0, 0, 0, 0, 0xffffffff)
        central += n + cext
    cd_off = len(out)
    out += central
    z64 = len(out)
    cnt = len(entries)
    out += struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, cnt, cnt, len(central), cd_off)
    out += struct.pack("<IIQI", 0x07064b50, 0, z64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xffff, 0xffff, 0xffffffff, 0xffffffff, 0)
    with open(dst, "wb") as f:
        f.write(out)
    with zipfile.ZipFile(dst) as z:     # Python must agree it is a zip
        assert z.testzip() is None


def raw_pth(name, pickle_bytes, storages=(), byteorder=b"little"):
    """A torch-style zip around hand-written pickle bytes."""
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_STORED) as z:
        z.writestr(zinfo("archive/data.pkl"), pickle_bytes)
        if byteorder is not None:
            z.writestr(zinfo("archive/byteorder"), byteorder)
        for key, data in storages:
            z.writestr(zinfo("archive/data/" + key), data)
        z.writestr(zinfo("archive/version"), b"3\n")


def U(s):   # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tensor_pickle(size, stride, offset=0, numel=4, storage_type=b"ctorch\nFloatStorage\n"):
    """{'w': _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())}"""
    def tup(xs):
        return b"(" + b"".join(b"\x8a\x08" + struct.pack("<q", x) for x in xs) + b"t"
    pid = b"(" + U("storage") + storage_type + U("0") + U("cpu") + b"J" + struct.pack("<i", numel) + b"tQ"
    call = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"J" + struct.pack("<i", offset) +
            tup(size) + tup(stride) + b"\x89ccollections\nOrderedDict\n)Rt" + b"R")
    return b"\x80\x02}" + U("w") + call + b"s."


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    ns = argparse.Namespace(model="tiny", lr=1e-3, epochs=300, model_ema=True, mean=None, crop_pct=None)

    # --- wrapper layouts ---
    sd = small_sd(1)
    save("top.pth", sd)
    expect("top.pth", sd, "")

    save("model.pth", {"model": sd, "epoch": 3, "args": ns})
    expect("model.pth", sd, "model")

    ema = small_sd(2)
    save("model_ema.pth", {"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
                           "lr_scheduler": {"last_epoch": 3}, "epoch": 3, "model_ema": ema,
                           "scaler": {"scale": 65536.0}, "args": ns})
    expect("model_ema.pth", sd, "model")
    expect("model_ema.pth", ema, "model_ema", ".ema")

    raw = collections.OrderedDict(ema)   # shares storages, like SG-Former's fixture
    raw["head.weight"] = ema["head.weight"] + 1
    save("timm.pth", {"epoch": 299, "arch": "tiny", "state_dict": raw, "optimizer": {"state": {}},
                      "version": 2, "args": ns, "amp_scaler": {"scale": 65536.0, "_growth_tracker": 0},
                      "state_dict_ema": ema, "metric": 83.2})
    expect("timm.pth", ema, "state_dict_ema")
    expect("timm.pth", raw, "state_dict", ".raw")

    msd = small_sd(3, "module.")
    save("module.pth", {"module": msd})
    expect("module.pth", msd, "module")
    save("state_dict_module.pth", {"state_dict": msd, "epoch": 1})
    expect("state_dict_module.pth", msd, "state_dict")

    # --- dtypes, views, shared storages, parameters, numpy entries ---
    g = torch.Generator().manual_seed(4)
    dt = collections.OrderedDict()
    dt["f16"] = (torch.randn(3, 5, generator=g) * 100).half()
    dt["f16_special"] = torch.tensor([0.0, -0.0, 6e-8, 65504.0, float("inf"), -float("inf"), 1e-5], dtype=torch.float16)
    dt["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    dt["f64"] = torch.randn(4, generator=g).double()
    dt["i64"] = torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3)
    dt["i32"] = torch.arange(5, dtype=torch.int32)
    dt["i16"] = torch.arange(-2, 2, dtype=torch.int16)
    dt["i8"] = torch.arange(-2, 2, dtype=torch.int8)
    dt["u8"] = torch.arange(250, 256, dtype=torch.uint8)
    dt["bool"] = torch.tensor([True, False, True])
    dt["scalar"] = torch.tensor(2.5)
    dt["empty"] = torch.zeros(0, 3)
    save("dtypes.pth", {"model": dt})
    expect("dtypes.pth", dt, "model")

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    vw = collections.OrderedDict()
    vw["base"] = base
    vw["transposed"] = base.t()                   # non-contiguous, same storage
    vw["slice"] = base[1:3, ::2]                  # offset and strides
    vw["row"] = base[2]                           # offset, contiguous
    vw["other"] = torch.randn(3, 4, generator=g).t()[1:]   # storage of its own
    vw["broadcast"] = torch.arange(3.0).expand(2, 3)      # stride 0
    vw["half_view"] = torch.arange(12, dtype=torch.float16).reshape(3, 4)[:, 1:3]
    save("views.pth", vw)
    expect("views.pth", vw, "")

    pr = collections.OrderedDict(w=torch.nn.Parameter(torch.randn(2, 2, generator=g)),
                                 b=torch.nn.Parameter(torch.zeros(2)))
    save("param.pth", pr)
    expect("param.pth", pr, "")

    save("numpy.pth", {"model": sd, "best_acc1": np.float64(81.5), "np_int": np.int64(3),
                       "np_arr": np.arange(4, dtype=np.float32), "tags": {"only"},
                       "big": 1 << 80, "neg": -5, "blob": b"\x00\x01", "none": None})
    expect("numpy.pth", sd, "model")

    save("proto4.pth", {"model": sd, "args": ns}, pickle_protocol=4)
    expect("proto4.pth", sd, "model")

    # --- containers: deflated, zip64 ---
    rezip(path("model.pth"), path("deflated.pth"), zipfile.ZIP_DEFLATED)
    expect("deflated.pth", sd, "model")
    with zipfile.ZipFile(path("model.pth")) as z:
        zip64_everywhere([(i.filename, z.read(i.filename)) for i in z.infolist()], path("zip64.pth"))
    expect("zip64.pth", sd, "model")
    rezip(path("model.pth"), path("zip64_local.pth"), zipfile.ZIP_STORED, force_zip64=True)
    expect("zip64_local.pth", sd, "model")

    # --- safetensors input and the round trip ---
    write_safetensors(path("flat.safetensors"), dt, {"format": "pt"})
    expect("flat.safetensors", dt, "")
    write_safetensors(path("module.safetensors"), msd)
    expect("module.safetensors", msd, "")

    # A tiny timm-layout ViT (patch 16, 32x32 input, dim 8, depth 1, 3 classes):
    # the same weights as .safetensors (timm/HF style) and as a DeiT-style .pth.
    D, C, N = 8, 3, 4
    g = torch.Generator().manual_seed(5)
    r = lambda *s: torch.randn(*s, generator=g) * 0.02
    vit = collections.OrderedDict()
    vit["cls_token"] = r(1, 1, D)
    vit["pos_embed"] = r(1, N + 1, D)
    vit["patch_embed.proj.weight"] = r(D, 3, 16, 16)
    vit["patch_embed.proj.bias"] = r(D)
    for k, s in [("norm1", None), ("attn.qkv", 3 * D), ("attn.proj", D), ("norm2", None),
                 ("mlp.fc1", 4 * D), ("mlp.fc2", D)]:
        if s is None:
            vit[f"blocks.0.{k}.weight"] = 1 + r(D)
            vit[f"blocks.0.{k}.bias"] = r(D)
        else:
            vit[f"blocks.0.{k}.weight"] = r(s, 4 * D if k == "mlp.fc2" else D)
            vit[f"blocks.0.{k}.bias"] = r(s)
    vit["norm.weight"] = 1 + r(D)
    vit["norm.bias"] = r(D)
    vit["head.weight"] = r(C, D)
    vit["head.bias"] = r(C)
    write_safetensors(path("vit_rt.safetensors"), vit, {"format": "pt"})
    # the .pth holds the model in another order, wrapped, with an optimizer
    shuffled = collections.OrderedDict(reversed(list(vit.items())))
    save("vit_rt.pth", {"model": shuffled, "model_ema": shuffled, "epoch": 9, "args": ns})
    expect("vit_rt.pth", shuffled, "model")
    with open(path("vit_rt.json"), "w") as f:
        json.dump({"config": {"arch": "deit_tiny_patch16_224", "img_size": 32, "patch_size": 16,
                              "embed_dim": D, "depth": 1, "num_heads": 2, "num_classes": C},
                   "sha256": {n: hashlib.sha256(open(path(n), "rb").read()).hexdigest()
                              for n in ("vit_rt.pth", "vit_rt.safetensors")}}, f, indent=1)

    # --- hostile files: name -> a piece of the message ---
    hostile = {}
    system = b"cposix\nsystem\n" + U("touch " + PWNED) + b"\x85R"
    raw_pth("h_system_top.pth", b"\x80\x02" + system + b".")
    hostile["h_system_top.pth"] = "posix.system"
    raw_pth("h_system_entry.pth", b"\x80\x02}" + U("model") + b"}" + U("w") + system + b"ss.")
    hostile["h_system_entry.pth"] = "needs posix.system to build a tensor"
    raw_pth("h_system_storage.pth", b"\x80\x02}" + U("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + system +
            b"K\x00(K\x01t(K\x01t\x89ccollections\nOrderedDict\n)RtRs.")
    hostile["h_system_storage.pth"] = "needs posix.system to build a tensor"
    stack_global = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len("touch " + PWNED)]) + \
        ("touch " + PWNED).encode() + b"\x85R."
    raw_pth("h_system_proto4.pth", stack_global)
    hostile["h_system_proto4.pth"] = "os.system"
    raw_pth("h_eval.pth", b"\x80\x02}" + U("w") + b"c__builtin__\neval\n" +
            U("__import__('os').system('touch " + PWNED + "')") + b"\x85Rs.")
    hostile["h_eval.pth"] = "__builtin__.eval"
    raw_pth("h_storage_type.pth", tensor_pickle([2], [1], storage_type=b"cposix\nsystem\n"),
            [("0", b"\0" * 16)])
    hostile["h_storage_type.pth"] = "needs posix.system"
    raw_pth("h_inst.pth", b"(cos\nsystem\nS'touch x'\no.")
    hostile["h_inst.pth"] = "unsupported pickle opcode"

    st16 = [("0", b"\0" * 16)]
    raw_pth("h_shape_huge.pth", tensor_pickle([1 << 40], [1]), st16)
    hostile["h_shape_huge.pth"] = "outside its storage"
    raw_pth("h_shape_overflow.pth", tensor_pickle([1 << 62, 1 << 62], [1, 1]), st16)
    hostile["h_shape_overflow.pth"] = "absurd tensor"
    raw_pth("h_stride_neg.pth", tensor_pickle([2], [-1], offset=1), st16)
    hostile["h_stride_neg.pth"] = "negative size or stride"
    raw_pth("h_offset.pth", tensor_pickle([2], [1], offset=3), st16)
    hostile["h_offset.pth"] = "outside its storage"
    raw_pth("h_stride_big.pth", tensor_pickle([2, 2], [1 << 61, 1]), st16)
    hostile["h_stride_big.pth"] = "outside its storage"
    raw_pth("h_broadcast.pth", tensor_pickle([1 << 20, 1 << 20], [0, 0]), st16)
    hostile["h_broadcast.pth"] = "absurd tensor shape"
    raw_pth("h_dims.pth", tensor_pickle([1] * 9, [1] * 9), st16)
    hostile["h_dims.pth"] = "more than 8 dimensions"
    raw_pth("h_storage_short.pth", tensor_pickle([4], [1], numel=4), [("0", b"\0" * 8)])
    hostile["h_storage_short.pth"] = "shorter than its size"
    raw_pth("h_storage_missing.pth", tensor_pickle([4], [1]), [])
    hostile["h_storage_missing.pth"] = "missing from the archive"
    raw_pth("h_bigendian.pth", tensor_pickle([4], [1]), st16, byteorder=b"big")
    hostile["h_bigendian.pth"] = "big-endian"
    raw_pth("h_string_claim.pth", b"\x80\x02X\xff\xff\xff\x7fabc.")
    hostile["h_string_claim.pth"] = "longer than the file"
    raw_pth("h_bytes8_claim.pth", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 60) + b"abc.")
    hostile["h_bytes8_claim.pth"] = "longer than the file"
    raw_pth("h_long4_claim.pth", b"\x80\x02\x8b\xff\xff\xff\xff\x01.")
    hostile["h_long4_claim.pth"] = "longer than the file"
    raw_pth("h_memo_get.pth", b"\x80\x02j\xf0\xff\xff\xff.")
    hostile["h_memo_get.pth"] = "memo index out of range"
    raw_pth("h_memo_put.pth", b"\x80\x02Nr\xf0\xff\xff\xff.")
    hostile["h_memo_put.pth"] = "memo index out of range"
    raw_pth("h_deep.pth", b"\x80\x02" + b"]" * 200 + b"a" * 199 + b".")
    hostile["h_deep.pth"] = "nests too deeply"
    raw_pth("h_marks.pth", b"\x80\x02" + b"(" * 70000 + b".")
    hostile["h_marks.pth"] = "nests too deeply"
    raw_pth("h_underflow.pth", b"\x80\x02s.")
    hostile["h_underflow.pth"] = "stack underflow"
    raw_pth("h_nostop.pth", b"\x80\x02}")
    hostile["h_nostop.pth"] = "no STOP"
    raw_pth("h_not_dict.pth", b"\x80\x02K\x05.")
    hostile["h_not_dict.pth"] = "no state dict"
    raw_pth("h_no_sd.pth", b"\x80\x02}" + U("epoch") + b"K\x03s.")
    hostile["h_no_sd.pth"] = "top-level keys: epoch"

    good = open(path("model.pth"), "rb").read()
    for name, data in [("h_trunc_half.pth", good[: len(good) // 2]), ("h_trunc_tail.pth", good[:-10]),
                       ("h_trunc_head.pth", good[:100])]:
        with open(path(name), "wb") as f:
            f.write(data)
        hostile[name] = "zip"
    # central directory pointing past the end of the file
    bad = bytearray(good)
    e = bad.rfind(b"PK\x06\x06")
    struct.pack_into("<Q", bad, e + 48, len(bad) * 2)
    with open(path("h_cdir_oob.pth"), "wb") as f:
        f.write(bad)
    hostile["h_cdir_oob.pth"] = "central directory is outside the file"
    # a local header offset past the end
    bad = bytearray(open(path("zip64.pth"), "rb").read())
    c = bad.find(b"PK\x01\x02")
    struct.pack_into("<Q", bad, c + 46 + len("archive/data.pkl") + 4 + 16, 1 << 40)
    with open(path("h_local_oob.pth"), "wb") as f:
        f.write(bad)
    hostile["h_local_oob.pth"] = "outside the file"
    # a deflate bomb claim: tiny compressed entry claiming 1 TiB
    with zipfile.ZipFile(path("h_bomb.pth"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zinfo("archive/data.pkl", zipfile.ZIP_DEFLATED), b"\x80\x02}.")
    bad = bytearray(open(path("h_bomb.pth"), "rb").read())
    c = bad.find(b"PK\x01\x02")
    struct.pack_into("<I", bad, c + 24, 0xfffffff0)
    with open(path("h_bomb.pth"), "wb") as f:
        f.write(bad)
    hostile["h_bomb.pth"] = "impossible size"
    # corrupt deflate data
    bad = bytearray(open(path("deflated.pth"), "rb").read())
    c = bad.find(b"archive/data.pkl") + len("archive/data.pkl")
    for i in range(c + 8, c + 40):
        bad[i] ^= 0x5a
    with open(path("h_deflate_corrupt.pth"), "wb") as f:
        f.write(bad)
    hostile["h_deflate_corrupt.pth"] = "zip entry"

    save("h_legacy.pth", sd, _use_new_zipfile_serialization=False)
    hostile["h_legacy.pth"] = "legacy (pre-1.6) torch.save format"
    with open(path("h_text.pth"), "wb") as f:
        f.write(b"hello, not a checkpoint\n")
    hostile["h_text.pth"] = "not a checkpoint"
    with open(path("hostile.json"), "w") as f:
        json.dump({"pwned": PWNED, "files": hostile}, f, indent=1, sort_keys=True)

    total = sum(os.path.getsize(path(n)) for n in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} files, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
