#!/usr/bin/env bats
# vt-sigmap: significance maps as frames and PNG. Values are checked against
# reference intermediates (the repo's fixtures, and ../shared's when
# VT_SHARED is set); PNGs are decoded by an independent pure-Python decoder
# (zlib + PNG unfiltering, no vtkit code) and compared with the frames.
load helper
bats_require_minimum_version 1.5.0

VIT=$FIX/vit
SGF=$FIX/sgformer
GMF=$FIX/groupmix
PLF=$FIX/pale
STF=$FIX/stvit

setup_file() {
  # The SG-Former fixture as a model file, shared by the tests.
  local d=$BATS_FILE_TMPDIR
  "$BIN/vt-convert" --arch sgformer_s --config "$SGF/meta.json" "$SGF/checkpoint.pth" \
    -o "$d/sg.safetensors"
}

SG() { echo "$BATS_FILE_TMPDIR/sg.safetensors"; }

# Python helpers (standard library only): frames, .npy, PNG, viridis.
pylib() {
  cat <<'PY'
import json, re, struct, sys, zlib, ast, os

def frames(path):
    b = open(path, "rb").read()
    pos, out = 0, []
    while pos < len(b):
        n = struct.unpack("<Q", b[pos:pos + 8])[0]
        h = json.loads(b[pos + 8:pos + 8 + n])
        base = pos + 8 + n
        meta = h.pop("__metadata__", {})
        ts, end = {}, base
        for k, v in h.items():
            a, e = v["data_offsets"]
            code = {"F32": "f", "I32": "i"}[v["dtype"]]
            ts[k] = (v["shape"], struct.unpack("<%d%s" % ((e - a) // 4, code), b[base + a:base + e]))
            end = max(end, base + e)
        out.append((meta, ts))
        pos = end
    return out

def npy(path):
    b = open(path, "rb").read()
    assert b[:6] == b"\x93NUMPY"
    if b[6] == 1:
        hl, off = struct.unpack("<H", b[8:10])[0], 10
    else:
        hl, off = struct.unpack("<I", b[8:12])[0], 12
    h = ast.literal_eval(b[off:off + hl].decode("latin1"))
    assert h["descr"] == "<f4" and not h["fortran_order"], h
    n = 1
    for s in h["shape"]:
        n *= s
    return list(h["shape"]), struct.unpack("<%df" % n, b[off + hl:off + hl + 4 * n])

def write_npy(path, shape, vals):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % \
        "".join("%d," % s for s in shape)
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
        f.write(struct.pack("<%df" % len(vals), *vals))

def png(path):
    """8-bit RGB, non-interlaced: (w, h, bytes)."""
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(b):
        n, typ = struct.unpack(">I4s", b[pos:pos + 8])
        data = b[pos + 8:pos + 8 + n]
        assert zlib.crc32(typ + data) == struct.unpack(">I", b[pos + 8 + n:pos + 12 + n])[0]
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, inter = struct.unpack(">IIBBBBB", data)
            assert depth == 8 and ctype == 2 and inter == 0, (depth, ctype, inter)
        elif typ == b"IDAT":
            idat += data
        pos += 12 + n
    raw, bpp, stride = zlib.decompress(idat), 3, w * 3
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            up = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + up) & 255
            elif f == 3: line[x] = (line[x] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - c
                pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                pr = a if pa <= pb and pa <= pc else up if pb <= pc else c
                line[x] = (line[x] + pr) & 255
            else:
                assert f == 0, f
        out += line
        prev = line
    return w, h, bytes(out)

def write_png(path, w, h, rgb):
    raw = b"".join(b"\0" + rgb[y * w * 3:(y + 1) * w * 3] for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def viridis():
    src = open(os.environ["ROOT"] + "/lib/image/colormap.c").read()
    src = src[src.index("viridis[256][3]"):]
    src = src[:src.index("};")]
    t = [tuple(map(int, m)) for m in re.findall(r"\{\s*(\d+),\s*(\d+),\s*(\d+)\}", src)]
    assert len(t) == 256, len(t)
    return t

def palette():
    src = open(os.environ["ROOT"] + "/lib/image/colormap.c").read()
    src = src[src.index("palette[VT_PALETTE_SIZE][3]"):]
    src = src[:src.index("};")]
    t = [tuple(map(int, m)) for m in re.findall(r"\{\s*(\d+),\s*(\d+),\s*(\d+)\}", src)]
    assert len(t) == 36, len(t)
    return t

def inverse(table, px):
    return min(range(256), key=lambda i: sum((px[k] - table[i][k]) ** 2 for k in range(3)))

def upsample(src, h, w, oh, ow):
    """Bilinear, half-pixel centres (F.interpolate align_corners=False)."""
    out = []
    for y in range(oh):
        sy = max((y + 0.5) * h / oh - 0.5, 0.0)
        y0 = int(sy); y1 = min(y0 + 1, h - 1); fy = sy - y0
        for x in range(ow):
            sx = max((x + 0.5) * w / ow - 0.5, 0.0)
            x0 = int(sx); x1 = min(x0 + 1, w - 1); fx = sx - x0
            top = src[y0 * w + x0] * (1 - fx) + src[y0 * w + x1] * fx
            bot = src[y1 * w + x0] * (1 - fx) + src[y1 * w + x1] * fx
            out.append(top * (1 - fy) + bot * fy)
    return out

def relerr(got, want):
    assert len(got) == len(want), (len(got), len(want))
    scale = max(abs(v) for v in want) or 1.0
    return max(abs(a - b) for a, b in zip(got, want)) / scale
PY
}

py() {   # py SCRIPT ARGS... : run a Python check with the helpers loaded
  local script=$1; shift
  { pylib; printf '%s\n' "$script"; } > "$T/check.py"
  ROOT=$ROOT "$PY" "$T/check.py" "$@"
}

have_py() { [ -x "$PY" ]; }

# ---- CLI conventions ----------------------------------------------------

@test "sigmap: --help is short and exact; --version; --list-methods" {
  run "$BIN/vt-sigmap" --help
  [ "$status" -eq 0 ]
  [[ "${lines[0]}" == "usage: vt-sigmap -m MODEL [options] [INPUT...]" ]]
  [[ "$output" == *"--png-dir DIR"* ]]
  [[ "$output" == *"--overlay"* ]]
  [[ "$output" == *"--alpha A"* ]]
  [[ "$output" == *"--query Y,X"* ]]
  [ "${#lines[@]}" -le 24 ]
  run "$BIN/vt-sigmap" --version
  [ "$output" = "vt-sigmap (vtkit) 0.1.0" ]
  run "$BIN/vt-sigmap" --list-methods
  [ "$status" -eq 0 ]
  [[ "$output" == *"sgformer   sgformer "*"(default)"* ]]
  [[ "$output" == *"vit        cls "*"(default)"* ]]
  [[ "$output" == *"vit        rollout "* ]]
  [[ "$output" == *"groupmix   attention "*"(default)"* ]]
  [[ "$output" == *"pale       pale "*"(default)"* ]]
  [[ "$output" == *"stvit      semantic "*"(default)"* ]]
  [[ "$output" != *"(not available yet)"* ]]
}

@test "sigmap: usage errors exit 2 with one line" {
  run_err "$BIN/vt-sigmap" "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  [[ "$err" == *"no model"* ]]
  run_err "$BIN/vt-sigmap" -m "$(SG)" --no-such-option x
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-sigmap" -m "$(SG)" --png a.png --png-dir "$T" x
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-sigmap" -m "$(SG)" --png "$T/a.png" "$SAMPLES/tench.jpg" "$SAMPLES/cheetah.jpg"
  [ "$status" -eq 2 ]
  [ ! -e "$T/a.png" ]
  run_err "$BIN/vt-sigmap" -m "$(SG)" --overlay "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-sigmap" -m "$(SG)" --png "$T/a.png" --overlay --alpha 1.5 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-sigmap" -m "$(SG)" --png-dir "$T/missing" "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-sigmap" -m "$(SG)" --stage 4 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line sg.safetensors "no hybrid block"
  run_err "$BIN/vt-sigmap" -m "$(SG)" --stage 1 --block 7 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line sg.safetensors "blocks 0 to 1"
  run_err "$BIN/vt-sigmap" -m "$(SG)" --method cls "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line sg.safetensors "no method 'cls'"
  run_err "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" --method rollout --block 2 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line tiny.safetensors "blocks 0 to 1, not 2"
  run_err "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" --method rollout --stage 2 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line tiny.safetensors "one stage"
  run_err "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" --block 0 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line tiny.safetensors "only the last block"
}

@test "sigmap: a bad input is reported, the others are still done, exit 1" {
  echo "not an image" > "$T/bad.jpg"
  status=0
  "$BIN/vt-sigmap" -m "$(SG)" "$SAMPLES/tench.jpg" "$T/bad.jpg" "$SAMPLES/polars.jpeg" \
    > "$T/out" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  err=$(cat "$T/err")
  one_error_line "vt-sigmap: $T/bad.jpg" "."
  run "$BIN/vt-convert" --info "$T/out"
  [ "$(grep -c '^frame ' <<< "$output")" -eq 2 ]
  [[ "$output" == *"tench.jpg (sigmap)"* ]]
  [[ "$output" == *"polars.jpeg (sigmap)"* ]]
}

@test "sigmap: the frame: [H,W] F32 at token resolution with model, method, range and crop geometry" {
  "$BIN/vt-sigmap" -m "$(SG)" "$SAMPLES/tench.jpg" > "$T/s"
  "$BIN/vt-convert" "$SAMPLES/tench.jpg" > "$T/img"
  run "$BIN/vt-convert" --info "$T/s"
  [[ "$output" == *"tench.jpg (sigmap)"* ]]
  [[ "$output" == *"sigmap"*"F32"*"[14,14]"* ]]
  for kv in "kind = sigmap" "model = sgformer_s" "method = sgformer" "stage = 3" "block = 0" \
            "size = 224" "range = " "model_sha256 = "; do
    [[ "$output" == *"$kv"* ]]
  done
  info_img=$("$BIN/vt-convert" -m "$(SG)" --info "$SAMPLES/tench.jpg")
  for k in orig_width orig_height resized crop; do
    grep -q "^  $k = " <<< "$output"
    [ "$(grep "^  $k = " <<< "$output")" = "$(grep "^  $k = " <<< "$info_img")" ]
  done
  # stage/block select other maps; a reallocation block names its map's block
  "$BIN/vt-sigmap" -m "$(SG)" --stage 1 "$SAMPLES/tench.jpg" | "$BIN/vt-convert" --info > "$T/i1"
  grep -q '\[56,56\]' "$T/i1"
  grep -q 'stage = 1' "$T/i1"
  grep -q 'block = 0' "$T/i1"
  "$BIN/vt-sigmap" -m "$(SG)" --stage 2 --block 1 "$SAMPLES/tench.jpg" > "$T/b1"
  "$BIN/vt-sigmap" -m "$(SG)" --stage 2 --block 0 "$SAMPLES/tench.jpg" > "$T/b0"
  cmp "$T/b0" "$T/b1"
  # vit: CLS attention of the last block on the 4x4 patch grid of the tiny model
  "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" "$SAMPLES/tench.jpg" | "$BIN/vt-convert" --info > "$T/v"
  grep -q '\[4,4\]' "$T/v"
  grep -q 'method = cls' "$T/v"
  grep -q 'size = 32' "$T/v"
  grep -q 'random = 1' "$T/v"
}

# ---- values against reference intermediates ----------------------------

@test "sigmap: vit cls equals the fixtures' CLS attention (tiny and distilled)" {
  have_py || skip "no /usr/bin/python3"
  for n in tiny dist; do
    "$BIN/vt-sigmap" -m "$VIT/$n.safetensors" "$VIT/$n-input.npy" > "$T/$n.frames"
    py '
fr = frames(sys.argv[1]); shape, ref = npy(sys.argv[2])
B, n = shape
assert len(fr) == B, (len(fr), B)
for b, (meta, ts) in enumerate(fr):
    (h, w), got = ts["sigmap"]
    want = ref[b * n + n - h * w:(b + 1) * n]
    e = relerr(got, want)
    print("# %s image %d: cls relative error %.3g" % (sys.argv[2].split("/")[-1], b, e))
    assert e <= 1e-5, e
    lo, hi = (struct.unpack("<f", struct.pack("<f", float(v)))[0] for v in meta["range"].split(","))
    assert lo == min(got) and hi == max(got), (meta["range"], min(got), max(got))
' "$T/$n.frames" "$VIT/$n-cls.npy"
  done
}

@test "sigmap: vit rollout equals the fixtures' rollout, every block (tiny and distilled)" {
  have_py || skip "no /usr/bin/python3"
  for n in tiny dist; do
    for b in default 0 1; do
      opt=(); [ "$b" = default ] || opt=(--block "$b")
      "$BIN/vt-sigmap" -m "$VIT/$n.safetensors" --method rollout "${opt[@]}" "$VIT/$n-input.npy" \
        > "$T/$n.frames"
      py '
fr = frames(sys.argv[1]); shape, ref = npy(sys.argv[2])
B, depth, n = shape
assert len(fr) == B, (len(fr), B)
for b, (meta, ts) in enumerate(fr):
    blk = int(meta["block"])
    assert meta["method"] == "rollout" and blk == (depth - 1 if sys.argv[3] == "default" else int(sys.argv[3])), meta
    (h, w), got = ts["sigmap"]
    row = (b * depth + blk) * n
    want = ref[row + n - h * w:row + n]    # patch tokens: the dist token dropped
    e = relerr(got, want)
    print("# %s image %d block %d: rollout relative error %.3g" % (sys.argv[2].split("/")[-1], b, blk, e))
    assert e <= 1e-5, e
' "$T/$n.frames" "$VIT/$n-rollout.npy" "$b"
    done
  done
}

@test "sigmap: groupmix attention equals the official modules' implicit map (64 and 128 px)" {
  have_py || skip "no /usr/bin/python3"
  # The fixture's inputs: x[i] = ((i * 2654435761) mod 2^32 >> 24) / 64 - 2.
  py '
import json
for path, b, s in ((sys.argv[1], 2, 64), (sys.argv[2], 1, 128)):
    write_npy(path, [b, 3, s, s], [(((i * 2654435761) & 0xffffffff) >> 24) / 64.0 - 2
                                   for i in range(b * 3 * s * s)])
m = json.load(open(sys.argv[3]))
m["size"] = m["config"]["img_size"] = 128
json.dump(m, open(sys.argv[4], "w"))
' "$T/in64.npy" "$T/in128.npy" "$GMF/meta.json" "$T/meta128.json"
  "$BIN/vt-convert" --arch groupmixformer_s --config "$GMF/meta.json" "$GMF/checkpoint.pth" -o "$T/gm"
  "$BIN/vt-convert" --arch groupmixformer_s --config "$T/meta128.json" "$GMF/checkpoint.pth" -o "$T/gm128"
  "$BIN/vt-sigmap" -m "$T/gm" "$T/in64.npy" > "$T/f64"                    # the default method
  "$BIN/vt-sigmap" -m "$T/gm128" --method attention --stage 3 "$T/in128.npy" > "$T/f128"
  for s in 64 128; do
    ref=$GMF/attention.npy; [ $s = 64 ] || ref=$GMF/attention_128.npy
    py '
fr = frames(sys.argv[1]); shape, ref = npy(sys.argv[2])
B, H, W = shape
assert len(fr) == B, (len(fr), B)
for b, (meta, ts) in enumerate(fr):
    assert (meta["method"], meta["stage"], meta["block"]) == ("attention", "3", "0"), meta
    (h, w), got = ts["sigmap"]
    assert (h, w) == (H, W), (h, w, H, W)
    e = relerr(got, ref[b * H * W:(b + 1) * H * W])
    print("# %s image %d: relative error %.3g" % (sys.argv[2].split("/")[-1], b, e))
    assert e <= 1e-5, e
' "$T/f$s" "$ref"
  done
  run_err "$BIN/vt-sigmap" -m "$T/gm" --stage 2 "$T/in64.npy"
  [ "$status" -eq 2 ]
  one_error_line gm "stages are 0 to 3.*not 2"
  run_err "$BIN/vt-sigmap" -m "$T/gm" --block 1 "$T/in64.npy"
  [ "$status" -eq 2 ]
  one_error_line gm "blocks 0 to 0, not 1"
  run_err "$BIN/vt-sigmap" -m "$T/gm" --method cls "$T/in64.npy"
  [ "$status" -eq 2 ]
  one_error_line gm "no method 'cls' for the groupmix family \\(it has: attention\\)"
}

@test "sigmap: pale --query: the pale footprint of the reference's attention (stages 1 and 2)" {
  have_py || skip "no /usr/bin/python3"
  "$BIN/vt-convert" --arch pale_tiny --config "$PLF/meta.json" "$PLF/checkpoint.pth" -o "$T/pale"
  # default: stage 1, its last block, the centre token; image 0 of input.npy
  "$BIN/vt-sigmap" -m "$T/pale" "$PLF/input.npy" > "$T/def"
  for q in 0,0 5,2 2,5; do
    "$BIN/vt-sigmap" -m "$T/pale" --method pale --query $q "$PLF/input.npy" > "$T/s1-$q"
  done
  for q in default 0,2 2,0; do
    opt=(); [ $q = default ] || opt=(--query $q)
    "$BIN/vt-sigmap" -m "$T/pale" --stage 2 --block 0 "${opt[@]}" "$PLF/input.npy" > "$T/s2-$q"
  done
  py '
import json
cfg = json.load(open(sys.argv[1] + "/meta.json"))["config"]
pale = cfg["pale_size"]
checked = 0
for path in sys.argv[2:]:
    (meta, ts), _ = frames(path)                 # image 0 (the fixture has its maps)
    stage, block = int(meta["stage"]), int(meta["block"])
    qy, qx = map(int, meta["query"].split(","))
    (h, w), got = ts["sigmap"]
    assert meta["method"] == "pale", meta
    if path.endswith("/def"):
        assert (stage, block, qy, qx) == (1, cfg["depths"][1] - 1, h // 2, w // 2), meta
    suffix = "" if stage == 1 else "_s%db%d" % (stage, block)
    (_, nh, n, _), row = npy(sys.argv[1] + "/row_attention%s.npy" % suffix)
    _, col = npy(sys.argv[1] + "/col_attention%s.npy" % suffix)
    assert n == h * w, (n, h, w)
    q = qy * w + qx
    want = [sum(0.5 / nh * (row[(j * n + q) * n + p] + col[(j * n + q) * n + p]) for j in range(nh))
            for p in range(n)]
    # the pales of the query: rows y = qy mod ceil(h/s), columns x = qx mod ceil(w/s)
    gy, gx = -(-h // pale[stage]), -(-w // pale[stage])
    inside = [(p // w) % gy == qy % gy or (p % w) % gx == qx % gx for p in range(n)]
    outside = max([abs(v) for v, i in zip(got, inside) if not i] or [0.0])
    total = sum(got)
    e = relerr(got, want)
    print("# stage %d block %d query %d,%d (%d heads/branch): relative error %.3g, sum %.7f, "
          "max outside the pales %g" % (stage, block, qy, qx, nh, e, total, outside))
    assert e <= 1e-5 and abs(total - 1) <= 1e-5 and outside == 0, (e, total, outside)
    assert sum(inside) < n            # the footprint is not the whole map
    checked += 1
assert checked == 7, checked
' "$PLF" "$T/def" "$T"/s1-* "$T"/s2-*
}

@test "sigmap: bad --query and methods of another family are refused with one line, exit 2" {
  "$BIN/vt-convert" --arch pale_tiny --config "$PLF/meta.json" "$PLF/checkpoint.pth" -o "$T/pale"
  for q in 6,0 0,6; do
    run_err "$BIN/vt-sigmap" -m "$T/pale" --query $q "$PLF/input.npy"
    [ "$status" -eq 2 ]
    one_error_line pale "--query $q is outside stage 1's 6x6 token grid"
  done
  run_err "$BIN/vt-sigmap" -m "$T/pale" --stage 2 --query 3,0 "$PLF/input.npy"
  [ "$status" -eq 2 ]
  one_error_line pale "outside stage 2's 3x3 token grid"
  for q in 1 1,2,3 a,1 -1,0 1, ,1 ""; do
    run_err "$BIN/vt-sigmap" -m "$T/pale" --query "$q" "$PLF/input.npy"
    [ "$status" -eq 2 ]
    [[ "$err" == "vt-sigmap: --query: expected Y,X"* ]]
  done
  run_err "$BIN/vt-sigmap" -m "$T/pale" --stage 4 "$PLF/input.npy"
  [ "$status" -eq 2 ]
  one_error_line pale "stages are 0 to 3.*not 4"
  run_err "$BIN/vt-sigmap" -m "$T/pale" --block 2 "$PLF/input.npy"
  [ "$status" -eq 2 ]
  one_error_line pale "stage 1 has blocks 0 to 1, not 2"
  run_err "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" --query 1,1 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line tiny.safetensors "--query: method 'cls' of vit takes no query token"
  run_err "$BIN/vt-sigmap" -m "$(SG)" --method sgformer-local --query 1,1 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line sg.safetensors "takes no query token"
  for m in rollout attention sgformer; do
    run_err "$BIN/vt-sigmap" -m "$T/pale" --method $m "$PLF/input.npy"
    [ "$status" -eq 2 ]
    one_error_line pale "no method '$m' for the pale family \\(it has: pale\\)"
  done
  run_err "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" --method pale "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line tiny.safetensors "no method 'pale' for the vit family \\(it has: cls, rollout\\)"
}

# The STViT-R fixture's input, x[i] = ((i * 2654435761) mod 2^32 >> 24) / 64 - 2,
# and model, in $T.
stvit_setup() {
  "$BIN/vt-convert" --arch stvit_r_swin_t --config "$STF/meta.json" "$STF/checkpoint.pth" -o "$T/st"
  py '
write_npy(sys.argv[1], [2, 3, 224, 224],
          [(((i * 2654435761) & 0xffffffff) >> 24) / 64.0 - 2 for i in range(2 * 3 * 224 * 224)])
' "$T/in.npy"
}

@test "sigmap: stvit semantic: labels equal the official assignment, coverage its attention" {
  have_py || skip "no /usr/bin/python3"
  stvit_setup
  "$BIN/vt-sigmap" -m "$T/st" "$T/in.npy" > "$T/f"                       # the default method
  "$BIN/vt-sigmap" -m "$T/st" --method semantic --stage 2 --block 3 "$T/in.npy" > "$T/f3"
  cmp "$T/f" "$T/f3"                                  # block 3 is in the one group: the same map
  py '
fr = frames(sys.argv[1])
assert len(fr) == 2, len(fr)
meta, ts = fr[0]                                      # the fixture holds image 0
assert (meta["method"], meta["stage"], meta["block"], meta["num_labels"]) == \
    ("semantic", "2", "5", "36"), meta
(h, w), cover = ts["sigmap"]
(lh, lw), labels = ts["labels"]
assert (h, w) == (lh, lw) == (14, 14), (h, w, lh, lw)
_, want = npy(sys.argv[2])
differ = sum(int(a) != int(b) for a, b in zip(labels, want))
(_, nh, n, S), att = npy(sys.argv[3])               # [1, heads, 196, 36] recovery attention
mean = [[sum(att[(j * n + p) * S + s] for j in range(nh)) / nh for s in range(S)] for p in range(n)]
gap = min(sorted(r)[-1] - sorted(r)[-2] for r in mean)
e = relerr(cover, [mean[p][labels[p]] for p in range(n)])
print("# %d of %d labels differ (smallest top-2 gap of the reference %.3g); coverage relative "
      "error %.3g; %d distinct labels" % (differ, n, gap, e, len(set(labels))))
assert differ == 0 and e <= 1e-5, (differ, e)
assert all(0 <= l < 36 for l in labels) and len(set(labels)) > 3
' "$T/f" "$STF/assignment_g0.npy" "$STF/recover_attn_g0.npy"
  run_err "$BIN/vt-sigmap" -m "$T/st" --stage 1 "$T/in.npy"
  [ "$status" -eq 2 ]
  one_error_line st "semantic tokens live in stage 2"
  run_err "$BIN/vt-sigmap" -m "$T/st" --block 6 "$T/in.npy"
  [ "$status" -eq 2 ]
  one_error_line st "stage 2 has blocks 0 to 5, not 6"
  run_err "$BIN/vt-sigmap" -m "$T/st" --query 1,1 "$T/in.npy"
  [ "$status" -eq 2 ]
  one_error_line st "method 'semantic' of stvit takes no query token"
}

@test "sigmap: stvit semantic PNG: palette colour per label, brightness by coverage; vt-convert draws the same" {
  have_py || skip "no /usr/bin/python3"
  stvit_setup
  "$BIN/vt-sigmap" -m "$T/st" "$T/in.npy" > "$T/f"
  mkdir "$T/d" "$T/c"
  "$BIN/vt-sigmap" -m "$T/st" --png-dir "$T/d" "$T/in.npy"
  "$BIN/vt-convert" --to png --out-dir "$T/c" "$T/f"
  for i in 0 1; do cmp "$T/d/in-$i.png" "$T/c/in-$i.png"; done
  "$BIN/vt-convert" --to png --tensor labels --out-dir "$T/c" "$T/f"   # labels alone
  mv "$T/c/in-0.png" "$T/labels-0.png"
  py '
fr = frames(sys.argv[1])
pal = palette()
assert len(set(pal)) == 36, "palette colours are not distinct"
for b, (meta, ts) in enumerate(fr):
    (h, w), cover = ts["sigmap"]
    _, labels = ts["labels"]
    lo, hi = map(float, meta["range"].split(","))
    S = int(meta["size"])
    W, H, pix = png(sys.argv[2 + b])
    assert (W, H) == (S, S), (W, H)
    for y in range(S):
        for x in range(S):
            p = (y * h // S) * w + x * w // S       # nearest: 16x16 pixels per token
            a = min(max((cover[p] - lo) / (hi - lo), 0.0), 1.0)
            k = 0.25 + 0.75 * a
            want = tuple(min(255, int(c * k + 0.5)) for c in pal[labels[p] % 36])
            got = tuple(pix[3 * (y * S + x):3 * (y * S + x) + 3])
            assert got == want, (b, y, x, got, want)
    print("# image %d: %d labels, every pixel its palette colour x (0.25 + 0.75 coverage)"
          % (b, len(set(labels))))
(meta, ts) = fr[0]
_, labels = ts["labels"]
W, H, pix = png(sys.argv[4])
S = int(meta["size"])
assert all(tuple(pix[3 * (y * S + x):3 * (y * S + x) + 3]) == pal[labels[(y * 14 // S) * 14 + x * 14 // S]]
           for y in range(0, S, 5) for x in range(0, S, 5)), "labels alone: not the palette"
' "$T/f" "$T/d/in-0.png" "$T/d/in-1.png" "$T/labels-0.png"
}

@test "sigmap: sgformer maps equal the fixture's significance maps (M, G, L; stages 1-3)" {
  have_py || skip "no /usr/bin/python3"
  # The fixture's input: x[i] = ((i * 2654435761) mod 2^32 >> 24) / 64 - 2 (image 0).
  py '
n = 3 * 224 * 224
write_npy(sys.argv[1], [1, 3, 224, 224],
          [(((i * 2654435761) & 0xffffffff) >> 24) / 64.0 - 2 for i in range(n)])
' "$T/input.npy"
  for s in 1 2 3; do
    for m in sgformer sgformer-global sgformer-local; do
      suffix=${m#sgformer}; suffix=${suffix#-}
      "$BIN/vt-sigmap" -m "$(SG)" --method $m --stage $s "$T/input.npy" > "$T/f"
      py '
(meta, ts), = frames(sys.argv[1]); shape, ref = npy(sys.argv[2])
(h, w), got = ts["sigmap"]
assert [h, w] == shape[1:], (h, w, shape)
e = relerr(got, ref[:h * w])
print("# %s: relative error %.3g" % (sys.argv[2].split("/")[-1], e))
assert e <= 1e-5, e
' "$T/f" "$SGF/sigmap${suffix:+_$suffix}_s${s}_b0.npy"
    done
  done
}

@test "sigmap: dge granularity is the reference gates' query density (per block, mean, PVT stages)" {
  have_py || skip "no /usr/bin/python3"
  local D=$FIX/dge
  "$BIN/vt-convert" --arch deit_dge_s124_tiny_patch16_256 --config "$D/deit_dge/meta.json" \
    "$D/deit_dge/checkpoint.pth" -o "$T/deit.safetensors"
  "$BIN/vt-convert" --arch pvt_dge_s124_small_256_mixgate --config "$D/pvt_dge/meta.json" \
    "$D/pvt_dge/checkpoint.pth" -o "$T/pvt.safetensors"
  "$BIN/vt-sigmap" -m "$T/deit.safetensors" "$D/deit_dge/input.npy" > "$T/mean"
  "$BIN/vt-sigmap" -m "$T/deit.safetensors" --block 1 "$D/deit_dge/input.npy" > "$T/b1"
  "$BIN/vt-sigmap" -m "$T/pvt.safetensors" --stage 2 --block 0 "$D/pvt_dge/input.npy" > "$T/s2"
  py '
fx = sys.argv[1]
def density(gmap, layers, b, B, hr, wr, R=4):
    # gate_map [L, B, hr, wr] of s values -> [(hr*R) * (wr*R)] mean of (s/R)^2
    shape, v = gmap
    out = []
    for y in range(hr * R):
        for x in range(wr * R):
            out.append(sum((v[((l * B + b) * hr + y // R) * wr + x // R] / R) ** 2
                           for l in layers) / len(layers))
    return out
g = npy(fx + "/deit_dge/gate_map.npy")
L, B, hr, wr = g[0]
for name, layers, block in (("mean", range(L), "-1"), ("b1", [1], "1")):
    fr = frames(sys.argv[2] + "/" + name)
    assert len(fr) == B, len(fr)
    for b, (meta, ts) in enumerate(fr):
        assert meta["method"] == "granularity" and meta["stage"] == "1" and meta["block"] == block, meta
        shape, got = ts["sigmap"]
        assert shape == [hr * 4, wr * 4], shape
        want = density(g, layers, b, B, hr, wr)
        assert max(abs(a - w) for a, w in zip(got, want)) < 1e-7, (name, b)
g = npy(fx + "/pvt_dge/gate_map_stage2.npy")
L, B, hr, wr = g[0]
(meta, ts), = frames(sys.argv[2] + "/s2")
assert meta["stage"] == "2" and meta["block"] == "0", meta
assert list(ts["sigmap"][1]) == density(g, [0], 0, B, hr, wr)
' "$D" "$T"
  # the baselines have no gates; a stage DeiT-DGE lacks
  "$BIN/vt-convert" --arch pvt_tiny_256 --config "$D/pvt/meta.json" "$D/pvt/checkpoint.pth" \
    -o "$T/plain.safetensors"
  run_err "$BIN/vt-sigmap" -m "$T/plain.safetensors" "$D/pvt/input.npy"
  [ "$status" -eq 2 ]
  one_error_line plain.safetensors "baseline without dynamic grained encoders"
  run_err "$BIN/vt-sigmap" -m "$T/deit.safetensors" --stage 2 "$D/deit_dge/input.npy"
  [ "$status" -eq 2 ]
  one_error_line deit.safetensors "one stage"
}

@test "sigmap: ../shared conformance fixtures: vit cls_attention and sgformer maps" {
  have_shared || skip "VT_SHARED not set"
  have_py || skip "no /usr/bin/python3"
  local n=0
  for d in "$VT_SHARED"/conformance/fixtures/vit-* "$VT_SHARED"/conformance/fixtures/sgformer-*; do
    [ -f "$d/meta.json" ] && [ -f "$d/input.npy" ] || continue
    local variant
    variant=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["variant"])' "$d/meta.json")
    "$BIN/vt-convert" --arch "$variant" --config "$d/meta.json" "$d/checkpoint.pth" -o "$T/m"
    if [[ $(basename "$d") == vit-* ]]; then
      "$BIN/vt-sigmap" -m "$T/m" "$d/input.npy" > "$T/f"
      py '
fr = frames(sys.argv[1]); shape, ref = npy(sys.argv[2])
B, n = shape
assert len(fr) == B
for b, (meta, ts) in enumerate(fr):
    (h, w), got = ts["sigmap"]
    e = relerr(got, ref[b * n + n - h * w:(b + 1) * n])
    print("# %s image %d: cls_attention relative error %.3g" % (sys.argv[3], b, e))
    assert e <= 1e-5, e
' "$T/f" "$d/cls_attention.npy" "$(basename "$d")"
    else
      for ref in "$d"/sigmap_*.npy; do
        local base kind s b method
        base=$(basename "$ref" .npy)            # sigmap[_global|_local]_sS_bB
        s=$(sed -E 's/.*_s([0-9]+)_b[0-9]+$/\1/' <<< "$base")
        b=$(sed -E 's/.*_b([0-9]+)$/\1/' <<< "$base")
        kind=$(sed -E 's/^sigmap_?(global|local)?_s.*/\1/' <<< "$base")
        method=sgformer${kind:+-$kind}
        "$BIN/vt-sigmap" -m "$T/m" --method "$method" --stage "$s" --block "$b" "$d/input.npy" > "$T/f"
        py '
fr = frames(sys.argv[1]); shape, ref = npy(sys.argv[2])
k = shape[0]; hw = len(ref) // k
for i in range(k):
    meta, ts = fr[i]
    (h, w), got = ts["sigmap"]
    e = relerr(got, ref[i * hw:(i + 1) * hw])
    print("# %s %s image %d: relative error %.3g" % (sys.argv[3], sys.argv[2].split("/")[-1], i, e))
    assert e <= 1e-4, e   # the bound tests/unit/test_sgformer.c holds the model to
' "$T/f" "$ref" "$(basename "$d")"
      done
    fi
    n=$((n + 1))
  done
  [ "$n" -gt 0 ]
}

@test "sigmap: ../shared conformance fixtures: pale attention, stvit semantic labels of every group" {
  have_shared || skip "VT_SHARED not set"
  have_py || skip "no /usr/bin/python3"
  local n=0
  for d in "$VT_SHARED"/conformance/fixtures/pale-* "$VT_SHARED"/conformance/fixtures/stvit-stvit*; do
    [ -f "$d/meta.json" ] && [ -f "$d/input.npy" ] || continue
    local variant
    variant=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["variant"])' "$d/meta.json")
    "$BIN/vt-convert" --arch "$variant" --config "$d/meta.json" "$d/checkpoint.pth" -o "$T/m"
    if [[ $(basename "$d") == pale-* ]]; then
      for q in default 0,0 6,6 2,5; do
        opt=(); [ $q = default ] || opt=(--query $q)
        "$BIN/vt-sigmap" -m "$T/m" "${opt[@]}" "$d/input.npy" > "$T/f"
        py '
(meta, ts) = frames(sys.argv[1])[0]
(h, w), got = ts["sigmap"]
qy, qx = map(int, meta["query"].split(","))
(_, nh, n, _), row = npy(sys.argv[2] + "/row_attention.npy")
_, col = npy(sys.argv[2] + "/col_attention.npy")
q = qy * w + qx
want = [sum(0.5 / nh * (row[(j * n + q) * n + p] + col[(j * n + q) * n + p]) for j in range(nh))
        for p in range(n)]
e = relerr(got, want)
print("# %s query %d,%d: relative error %.3g" % (sys.argv[3], qy, qx, e))
assert meta["stage"] == "1" and e <= 1e-5, (meta, e)
' "$T/f" "$d" "$(basename "$d")"
      done
    else
      local groups
      groups=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["num_groups"])' "$d/meta.json")
      for ((g = 0; g < groups; g++)); do
        "$BIN/vt-sigmap" -m "$T/m" --block $((6 * g + 1)) "$d/input.npy" > "$T/f"
        py '
(meta, ts), = frames(sys.argv[1])
_, cover = ts["sigmap"]
_, labels = ts["labels"]
g = int(sys.argv[4])
assert meta["block"] == str(6 * g + 5), meta
_, want = npy(sys.argv[2] + "/assignment_g%d.npy" % g)
differ = sum(int(a) != int(b) for a, b in zip(labels, want))
(_, nh, n, S), att = npy(sys.argv[2] + "/recover_attn_g%d.npy" % g)
e = relerr(cover, [sum(att[(j * n + p) * S + labels[p]] for j in range(nh)) / nh for p in range(n)])
print("# %s group %d: %d of %d labels differ, coverage relative error %.3g" % (sys.argv[3], g, differ, n, e))
assert differ == 0 and e <= 1e-5, (differ, e)
' "$T/f" "$d" "$(basename "$d")" $g
      done
    fi
    n=$((n + 1))
  done
  [ "$n" -gt 0 ]
}

# ---- PNG ----------------------------------------------------------------

@test "sigmap: --png decodes to the frame's values through the colormap (independent decoder)" {
  have_py || skip "no /usr/bin/python3"
  "$BIN/vt-sigmap" -m "$(SG)" --stage 2 "$SAMPLES/cheetah.jpg" > "$T/f"
  "$BIN/vt-sigmap" -m "$(SG)" --stage 2 --png "$T/map.png" "$SAMPLES/cheetah.jpg"
  py '
(meta, ts), = frames(sys.argv[1])
(h, w), m = ts["sigmap"]
lo, hi = map(float, meta["range"].split(","))
S = int(meta["size"])
W, H, pix = png(sys.argv[2])
assert (W, H) == (S, S), (W, H, S)
up = upsample(m, h, w, S, S)
cm = viridis()
worst, seen = 0.0, set()
for i in range(0, S * S, 7):                 # every 7th pixel
    t = (up[i] - lo) / (hi - lo)
    k = inverse(cm, pix[3 * i:3 * i + 3])
    assert cm[k] == tuple(pix[3 * i:3 * i + 3]), "pixel %d is no colormap colour" % i
    worst = max(worst, abs(k / 255.0 - t)); seen.add(k)
# token centres, no interpolation model needed: the pixel nearest each centre
step = S // h
for ty in range(h):
    for tx in range(w):
        y, x = ty * step + step // 2, tx * step + step // 2
        k = inverse(cm, pix[3 * (y * S + x):3 * (y * S + x) + 3])
        t = (m[ty * w + tx] - lo) / (hi - lo)
        nb = [m[yy * w + xx] for yy in (max(ty - 1, 0), ty, min(ty + 1, h - 1))
              for xx in (max(tx - 1, 0), tx, min(tx + 1, w - 1))]
        slack = (max(nb) - min(nb)) / (hi - lo) / step   # half a pixel of bilinear drift
        assert abs(k / 255.0 - t) <= 1 / 255.0 + slack + 1e-6, (ty, tx, k, t)
print("# worst |colormap index/255 - value| = %.4g over %d colours" % (worst, len(seen)))
assert worst <= 1 / 255.0 + 1e-6, worst
assert len(seen) > 100, len(seen)
' "$T/f" "$T/map.png"
}

@test "sigmap: vt-convert --to png of the frame gives the same PNG as vt-sigmap --png" {
  "$BIN/vt-sigmap" -m "$(SG)" "$SAMPLES/tench.jpg" > "$T/f"
  "$BIN/vt-convert" --to png -o "$T/a.png" "$T/f"
  "$BIN/vt-sigmap" -m "$(SG)" --png "$T/b.png" "$SAMPLES/tench.jpg"
  cmp "$T/a.png" "$T/b.png"
  # the pipe from the README
  "$BIN/vt-convert" -m "$(SG)" "$SAMPLES/tench.jpg" | "$BIN/vt-sigmap" -m "$(SG)" |
    "$BIN/vt-convert" --to png -o "$T/c.png" -
  cmp "$T/b.png" "$T/c.png"
  # vit too
  "$BIN/vt-convert" -m "$VIT/tiny.safetensors" "$SAMPLES/magpie.jpeg" |
    "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" | "$BIN/vt-convert" --to png -o "$T/d.png" -
  "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" --png "$T/e.png" "$SAMPLES/magpie.jpeg"
  cmp "$T/d.png" "$T/e.png"
}

@test "sigmap: --overlay keeps the crop's pixels at alpha 0, the map's at 1, blends between" {
  have_py || skip "no /usr/bin/python3"
  # A 35x35 photo: the tiny vit model resizes to int(32/0.9) = 35 (no-op) and crops 32.
  py '
import random
random.seed(5)
write_png(sys.argv[1], 35, 35, bytes(random.randrange(256) for _ in range(35 * 35 * 3)))
' "$T/photo.png"
  M=$VIT/tiny.safetensors
  "$BIN/vt-sigmap" -m "$M" "$T/photo.png" > "$T/f"
  "$BIN/vt-sigmap" -m "$M" --png "$T/map.png" "$T/photo.png"
  for a in 0 1 0.25; do
    "$BIN/vt-sigmap" -m "$M" --png "$T/o$a.png" --overlay --alpha $a "$T/photo.png"
  done
  "$BIN/vt-sigmap" -m "$M" --png "$T/odef.png" --overlay "$T/photo.png"
  py '
(meta, ts), = frames(sys.argv[1])
left, top, cw, ch = map(int, meta["crop"].split(","))
assert meta["resized"] == "35,35", meta["resized"]
W, H, photo = png(sys.argv[2])
S = int(meta["size"])
crop = b"".join(photo[3 * ((top + y) * W + left):3 * ((top + y) * W + left + S)] for y in range(S))
_, _, m = png(sys.argv[3])
_, _, o0 = png(sys.argv[4])
_, _, o1 = png(sys.argv[5])
_, _, oq = png(sys.argv[6])
_, _, oh = png(sys.argv[7])
assert o0 == crop, "alpha 0 changed the photo crop"
assert o1 == m, "alpha 1 is not the map"
import math
for a, o in ((0.25, oq), (0.5, oh)):
    d = max(abs(o[i] - ((1 - a) * crop[i] + a * m[i])) for i in range(len(o)))
    assert d <= 0.5 + 1e-9, (a, d)
print("# crop at %d,%d of 35x35; blends within rounding" % (left, top))
' "$T/f" "$T/photo.png" "$T/map.png" "$T/o0.png" "$T/o1.png" "$T/o0.25.png" "$T/odef.png"
}

@test "sigmap: --png-dir writes DIR/STEM.png per input, atomically, also under xargs -P" {
  mkdir "$T/d" "$T/x"
  "$BIN/vt-sigmap" -m "$(SG)" --png-dir "$T/d" "$SAMPLES"/*
  for f in cheetah magpie polars tench; do [ -s "$T/d/$f.png" ]; done
  [ "$(ls -A "$T/d" | wc -l)" -eq 4 ]      # no temporary files left
  printf '%s\n' "$SAMPLES"/* | xargs -P 2 -n 1 "$BIN/vt-sigmap" -m "$(SG)" --png-dir "$T/x"
  for f in cheetah magpie polars tench; do cmp "$T/d/$f.png" "$T/x/$f.png"; done
  # batch names from a [B,3,H,W] npy keep their index
  mkdir "$T/b"
  "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" --png-dir "$T/b" "$VIT/tiny-input.npy"
  [ -s "$T/b/tiny-input-0.png" ]
  [ -s "$T/b/tiny-input-2.png" ]
}

@test "sigmap: the man page renders clean and lists every method and option" {
  command -v man >/dev/null || skip "no man"
  out=$(MANWIDTH=80 man -l "$ROOT/man/vt-sigmap.1" 2>&1 >/dev/null)
  [ -z "$out" ]
  text=$(MANWIDTH=80 man -l "$ROOT/man/vt-sigmap.1" 2>/dev/null | col -bx)
  for w in --method --stage --block --query --threads --png --png-dir --overlay --alpha \
           --list-methods num_labels granularity; do
    grep -q -- "$w" <<< "$text"
  done
  # every method of --list-methods has its entry, and the table row
  "$BIN/vt-sigmap" --list-methods | while read -r fam m _; do
    grep -Eq -- "^ +$fam +$m( \\(default\\))?\$" <<< "$text"
    grep -Eq -- "^ +$fam +$m\\*? " <<< "$text"
  done
  # the palette listed is the one drawn
  have_py || skip "no /usr/bin/python3"
  py '
import re
hexes = re.findall(r"\b[0-9a-f]{6}\b", sys.stdin.read().split("labels 0 to 35")[1].split("All of this")[0])
assert [tuple(int(h[i:i + 2], 16) for i in (0, 2, 4)) for h in hexes] == palette(), hexes
' <<< "$text"
}

@test "sigmap: labels no integer type holds draw as a colour, not undefined behaviour" {
  [ -x "$PY" ] || skip "no /usr/bin/python3"
  # a sigmap frame whose I64 labels hold 2^63-1 and -2^63 (hostile, from a pipe)
  "$PY" - "$T/lab.frame" <<'PY'
import json, struct, sys
data = struct.pack("<ff", 0.5, 1.0) + struct.pack("<qq", 2**63 - 1, -2**63)
hdr = {"__metadata__": {"kind": "sigmap"},
       "sigmap": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]},
       "labels": {"dtype": "I64", "shape": [1, 2], "data_offsets": [8, 24]}}
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
PY
  run "$BIN/vt-convert" --to png -o "$T/lab.png" "$T/lab.frame"
  [ "$status" -eq 0 ]
  [ -s "$T/lab.png" ]
}
