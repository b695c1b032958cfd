#!/usr/bin/python3
"""Make the small fixtures the CLI tests use (run from the repo root):
tests/fixtures/cli/batch.npy   float32 [2,3,32,32], seeded
tests/fixtures/cli/tiny.png    a 40x30 RGB PNG
tests/fixtures/cli/bad-crc.png the same PNG with IDAT's CRC damaged
"""
import io
import numpy as np
from PIL import Image

out = "tests/fixtures/cli/"
rng = np.random.default_rng(7)
np.save(out + "batch.npy", rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
img = Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8), "RGB")
buf = io.BytesIO()
img.save(buf, "PNG")
png = bytearray(buf.getvalue())
open(out + "tiny.png", "wb").write(png)
at = png.index(b"IDAT")
n = int.from_bytes(png[at - 4:at], "big")
png[at + 4 + n] ^= 0x55      # the first byte of IDAT's CRC: the data is fine
open(out + "bad-crc.png", "wb").write(png)
