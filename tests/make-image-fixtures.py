#!/usr/bin/python3
"""Regenerate tests/fixtures/images/: small images in every format and mode
vtkit decodes, each with <name>.npy holding what Pillow (the reference,
Debian 12's python3-pil 9.4) decodes: Image.open(p).convert("RGB").
Also resize and timm-style preprocessing references, and EXIF orientation
references. Deterministic; run with Debian's /usr/bin/python3:

    /usr/bin/python3 tests/make-image-fixtures.py [path/to/kiwi.jpg]
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "images")
PHOTO = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, "..", "..", "shared", "photos", "kiwi.jpg")


def save_npy(name, arr):
    np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(arr, dtype=np.uint8))


def reference(name):
    """<name>.npy = Pillow's RGB pixels for fixture file `name`."""
    im = Image.open(os.path.join(OUT, name)).convert("RGB")
    save_npy(os.path.splitext(name)[0], np.asarray(im))


# ---- a PNG writer for what Pillow cannot write (16-bit colour, Adam7) ----

def chunk(kind, data):
    c = kind + data
    return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)


def png_bytes(arr, color, depth, interlace=False):
    """arr: H x W x C unsigned ints (uint8 or uint16) -> PNG file bytes."""
    h, w = arr.shape[:2]
    dt = ">u2" if depth == 16 else "u1"

    def rows(a):
        return b"".join(b"\0" + a[y].astype(dt).tobytes() for y in range(a.shape[0]))

    if not interlace:
        raw = rows(arr)
    else:
        raw = b""
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                               (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
            sub = arr[y0::dy, x0::dx]
            if sub.size:
                raw += rows(sub)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    for n in os.listdir(OUT):   # start clean so nothing stale survives
        os.remove(os.path.join(OUT, n))
    photo = Image.open(PHOTO).convert("RGB")
    # A detailed crop (the kiwi's head region), made small.
    crop = photo.crop((300, 200, 780, 560))
    base = crop.resize((40, 30), Image.BICUBIC)          # 40x30
    odd = crop.resize((37, 29), Image.BILINEAR)          # odd sizes: edge MCUs
    rgb = np.asarray(base)
    h, w = rgb.shape[:2]
    gray = np.asarray(base.convert("L"))
    ramp = (np.arange(h * w, dtype=np.uint32).reshape(h, w) * 37) % 256

    # ---- JPEG ----
    base.save(os.path.join(OUT, "jpeg_baseline.jpg"), quality=90)
    odd.save(os.path.join(OUT, "jpeg_odd420.jpg"), quality=85)
    odd.save(os.path.join(OUT, "jpeg_odd444.jpg"), quality=85, subsampling=0)
    base.save(os.path.join(OUT, "jpeg_progressive.jpg"), quality=90, progressive=True)
    base.convert("L").save(os.path.join(OUT, "jpeg_gray.jpg"), quality=90)
    base.convert("CMYK").save(os.path.join(OUT, "jpeg_cmyk.jpg"), quality=90)
    for n in ("jpeg_baseline.jpg", "jpeg_odd420.jpg", "jpeg_odd444.jpg",
              "jpeg_progressive.jpg", "jpeg_gray.jpg", "jpeg_cmyk.jpg"):
        reference(n)

    # ---- PNG in Pillow's modes ----
    base.save(os.path.join(OUT, "png_rgb.png"))
    base.convert("L").save(os.path.join(OUT, "png_l.png"))
    la = base.convert("LA"); la.putalpha(Image.fromarray(ramp.astype(np.uint8)))
    la.save(os.path.join(OUT, "png_la.png"))
    rgba = base.convert("RGBA"); rgba.putalpha(Image.fromarray(ramp.astype(np.uint8)))
    rgba.save(os.path.join(OUT, "png_rgba.png"))
    pal = base.quantize(colors=200)
    pal.info["transparency"] = 3
    pal.save(os.path.join(OUT, "png_p.png"), transparency=3)
    base.quantize(colors=16).save(os.path.join(OUT, "png_p4.png"), bits=4)
    # A palette shorter than the indices used: Pillow's gray ramp fills in.
    short = Image.fromarray((ramp % 8).astype(np.uint8), "P")
    short.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    write("png_pshort.png", png_short_palette(np.asarray(short)))
    base.convert("1").save(os.path.join(OUT, "png_1bit.png"))
    g16 = (gray.astype(np.uint32) * 2).astype(np.uint16)        # 0..510: clipping
    write("png_i16.png", png_bytes(g16, 0, 16))
    write("png_rgb16.png", png_bytes(rgb.astype(np.uint16) * 257 + 3, 2, 16))
    la16 = np.stack([gray.astype(np.uint16) * 256 + 200, ramp.astype(np.uint16) * 250], -1)
    write("png_la16.png", png_bytes(la16, 4, 16))
    rgba16 = np.concatenate([rgb.astype(np.uint16) * 256 + 77,
                             (ramp.astype(np.uint16) * 99)[..., None]], -1)
    write("png_rgba16_interlaced.png", png_bytes(rgba16, 6, 16, interlace=True))
    write("png_rgb_interlaced.png", png_bytes(rgb, 2, 8, interlace=True))
    g2 = (gray >> 6).astype(np.uint8)
    write("png_gray2.png", png_packed(g2, 2))
    for n in ("png_rgb.png", "png_l.png", "png_la.png", "png_rgba.png", "png_p.png",
              "png_p4.png", "png_pshort.png", "png_1bit.png", "png_i16.png",
              "png_rgb16.png", "png_la16.png", "png_rgba16_interlaced.png",
              "png_rgb_interlaced.png", "png_gray2.png"):
        reference(n)

    # ---- PNM (binary), with header comments and unusual maxvals ----
    def pnm(magic, arr, maxval, comment=b"# made by make-image-fixtures.py\n"):
        hh, ww = arr.shape[:2]
        hdr = magic + b"\n" + comment + b"%d %d\n# maxval next\n%d\n" % (ww, hh, maxval)
        data = arr.astype(">u2" if maxval > 255 else "u1").tobytes()
        return hdr + data
    write("pnm_rgb.ppm", pnm(b"P6", rgb, 255))
    write("pnm_gray.pgm", pnm(b"P5", gray, 255))
    write("pnm_rgb_max1000.ppm", pnm(b"P6", rgb.astype(np.uint32) * 1000 // 255, 1000))
    write("pnm_gray_max100.pgm", pnm(b"P5", gray.astype(np.uint32) * 100 // 255, 100))
    write("pnm_gray_max65535.pgm", pnm(b"P5", gray.astype(np.uint32) * 2, 65535))
    write("pnm_gray_max300.pgm", pnm(b"P5", gray.astype(np.uint32) // 2, 300))
    for n in ("pnm_rgb.ppm", "pnm_gray.pgm", "pnm_rgb_max1000.ppm",
              "pnm_gray_max100.pgm", "pnm_gray_max65535.pgm", "pnm_gray_max300.pgm"):
        reference(n)

    # ---- resizing the decoded png_rgb.png ----
    src = Image.open(os.path.join(OUT, "png_rgb.png")).convert("RGB")
    filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
               "nearest": Image.NEAREST}
    for (rw, rh) in ((20, 15), (13, 29), (64, 41), (40, 17), (25, 30), (7, 5), (71, 23)):
        for fname, f in filters.items():
            save_npy("resize_%dx%d_%s" % (rw, rh, fname), np.asarray(src.resize((rw, rh), f)))

    # ---- timm eval preprocessing (size 32) on two fixtures ----
    for n in ("jpeg_baseline.jpg", "jpeg_odd420.jpg"):
        for interp, f in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
            save_npy("preprocess32_%s_%s" % (os.path.splitext(n)[0], interp),
                     preprocess(os.path.join(OUT, n), 32, 0.875, f))
    # portrait
    odd.transpose(Image.TRANSPOSE).save(os.path.join(OUT, "jpeg_portrait.jpg"), quality=85)
    reference("jpeg_portrait.jpg")
    save_npy("preprocess32_jpeg_portrait_bicubic",
             preprocess(os.path.join(OUT, "jpeg_portrait.jpg"), 32, 0.875, Image.BICUBIC))

    # ---- EXIF orientation 1..8 on a small non-square JPEG ----
    small = crop.resize((12, 8), Image.BICUBIC)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        n = "exif_orient%d.jpg" % o
        small.save(os.path.join(OUT, n), quality=95, exif=exif.tobytes())
        im = Image.open(os.path.join(OUT, n))
        save_npy("exif_orient%d" % o, np.asarray(ImageOps.exif_transpose(im).convert("RGB")))


def png_packed(arr, depth):
    """Gray with depth < 8, packed MSB first."""
    h, w = arr.shape
    per = 8 // depth
    rows = []
    for y in range(h):
        row = bytearray()
        for x0 in range(0, w, per):
            b = 0
            for i in range(per):
                v = int(arr[y, x0 + i]) if x0 + i < w else 0
                b |= v << (8 - depth * (i + 1))
            row.append(b)
        rows.append(b"\0" + bytes(row))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def png_short_palette(idx):
    h, w = idx.shape
    raw = b"".join(b"\0" + idx[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    plte = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", plte) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def preprocess(path, size, crop_pct, resample):
    """../shared/conformance/preprocess_ref.py's transform."""
    img = Image.open(path).convert("RGB")
    scale = int(size / crop_pct)
    w, h = img.size
    nw, nh = (scale, int(scale * h / w)) if w < h else (int(scale * w / h), scale)
    img = img.resize((nw, nh), resample)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


if __name__ == "__main__":
    main()
