#!/usr/bin/env python3
"""Write tests/fixtures/hostile/: small files whose headers claim absurd
sizes, for tests/bats/hostile.bats. Python 3 standard library only.

    huge.png     IHDR (valid CRC) claiming 100000 x 100000 pixels
    huge.jpg     a real 40x30 JPEG whose SOF0 claims 65500 x 65500
    huge.ppm     a P6 header claiming 100000 x 100000
    tall.png     a real 1 x 65535 gray strip (65535 pixels: under every
                 limit, but resized whole for a 224 crop it would be 12 GB)
    tb.frame     a frame whose one tensor claims 1 TiB of F32
    big.frame    a frame claiming 32 GiB (under the frame data limit),
                 carrying 4 KiB: the reader must not allocate the claim
    huge.npy     a .npy claiming a 10^6 x 10^6 float32 array, 64 bytes of data

The billion-element pickle is made by hostile.bats itself (billion_pth
below is the same code): its compressed form is 2 MB, too big to keep.
"""
import json
import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(ROOT, "fixtures", "hostile")


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w, h, color, rows):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    body = chunk(b"IHDR", ihdr)
    if rows is not None:
        body += chunk(b"IDAT", zlib.compress(rows, 9))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def jpeg_claiming(src, w, h):
    b = bytearray(open(src, "rb").read())
    i = b.index(b"\xff\xc0")
    struct.pack_into(">HH", b, i + 5, h, w)
    return bytes(b)


def frame(header, data):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def npy(descr, shape, data):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    h += " " * (-(10 + len(h) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data


def billion_pth(path, items=10**9):
    """A torch.save zip whose data.pkl is a list of `items` references to one
    int (2 bytes each): 2 GB of pickle, 2 MB deflated. One compressed block,
    flushed so it stands alone, is repeated; the CRC is computed honestly."""
    unit = b"h\x01" * (1 << 19)                      # 1 MiB of pickle
    head = b"\x80\x02]K\x01q\x010("
    tail = b"e."
    reps = items * 2 // len(unit)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [comp.compress(head), comp.flush(zlib.Z_FULL_FLUSH)]
    block = comp.compress(unit) + comp.flush(zlib.Z_FULL_FLUSH)
    end = comp.compress(tail) + comp.flush()
    crc = zlib.crc32(head)
    for _ in range(reps):
        crc = zlib.crc32(unit, crc)
    crc = zlib.crc32(tail, crc)
    usize = len(head) + reps * len(unit) + len(tail)
    data = parts[0] + parts[1] + block * reps + end
    name = b"archive/data.pkl"
    zip64 = struct.pack("<HHQQ", 1, 16, usize, len(data))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0, crc,
                        0xFFFFFFFF, 0xFFFFFFFF, len(name), len(zip64)) + name + zip64
    cdir_extra = struct.pack("<HHQQ", 1, 16, usize, len(data))
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0, crc,
                          0xFFFFFFFF, 0xFFFFFFFF, len(name), len(cdir_extra), 0, 0, 0, 0,
                          0) + name + cdir_extra
    cd_off = len(local) + len(data)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), cd_off, 0)
    with open(path, "wb") as f:
        f.write(local)
        f.write(data)
        f.write(central)
        f.write(eocd)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "billion":
        billion_pth(sys.argv[2])
        return
    os.makedirs(OUT, exist_ok=True)
    files = {
        "huge.png": png(100000, 100000, 2, None),
        "huge.jpg": jpeg_claiming(os.path.join(ROOT, "fixtures", "images", "jpeg_baseline.jpg"),
                                  65500, 65500),
        "huge.ppm": b"P6\n100000 100000\n255\n" + bytes(64),
        "tall.png": png(1, 65535, 0, b"\x00\x80" * 65535),
        "tb.frame": frame({"__metadata__": {"vt": "1", "kind": "tensor", "name": "tb"},
                           "tensor": {"dtype": "F32", "shape": [262144, 1048576],
                                      "data_offsets": [0, 1 << 40]}}, b""),
        "big.frame": frame({"__metadata__": {"vt": "1", "kind": "tensor", "name": "big"},
                            "tensor": {"dtype": "F32", "shape": [8192, 1048576],
                                       "data_offsets": [0, 32 << 30]}}, bytes(4096)),
        "huge.npy": npy("<f4", "(1000000, 1000000)", bytes(64)),
    }
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
