#!/usr/bin/env bats
# vt-convert as a user runs it: conversions, pipes, atomic output, errors.
load helper
bats_require_minimum_version 1.5.0

@test "every tool answers --help and --version" {
  for t in vt-convert vt-classify vt-sigmap vt-prune vt-bench; do
    run "$BIN/$t" --help
    [ "$status" -eq 0 ]
    [[ "$output" == *"usage: $t"* ]]
    run "$BIN/$t" --version
    [ "$status" -eq 0 ]
    [[ "$output" == "$t (vtkit) "* ]]
  done
}

@test "unknown option is a usage error with status 2" {
  run "$BIN/vt-convert" --no-such-option
  [ "$status" -eq 2 ]
}

@test "a photo becomes one image frame [3,224,224] with its geometry" {
  "$BIN/vt-convert" "$SAMPLES/tench.jpg" > "$T/f"
  run "$BIN/vt-convert" --info "$T/f"
  [ "$status" -eq 0 ]
  [[ "$output" == *"tench.jpg (image)"* ]]
  [[ "$output" == *"image"*"F32"*"[3,224,224]"* ]]
  [[ "$output" == *"orig_width = "* ]]
  [[ "$output" == *"crop = "* ]]
  [[ "$output" == *"interpolation = bicubic"* ]]
}

@test "preprocessing options change the frame" {
  "$BIN/vt-convert" --size 96 --crop-pct 0.9 --interp bilinear --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 \
    "$SAMPLES/tench.jpg" | "$BIN/vt-convert" --info > "$T/info"
  grep -q '\[3,96,96\]' "$T/info"
  grep -q 'interpolation = bilinear' "$T/info"
  grep -q 'mean = 0.5,0.5,0.5' "$T/info"
}

@test "bad option values are usage errors" {
  run "$BIN/vt-convert" --size 0 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  run "$BIN/vt-convert" --mean 1,2 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  run "$BIN/vt-convert" --interp lanczos "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  run "$BIN/vt-convert" --to jpeg "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
}

@test "--dtype without --arch is a usage error, not a silent copy" {
  run "$BIN/vt-convert" --dtype bf16 -o "$T/out" "$FIX/cli/batch.npy"
  [ "$status" -eq 2 ]
  [[ "$output" == *"--dtype"*"go with --arch"* ]]
  [ ! -e "$T/out" ]
}

@test "a [B,3,H,W] npy becomes B frames named NAME#i, and stacks back bit for bit" {
  run "$BIN/vt-convert" --info "$FIX/cli/batch.npy"
  [ "$status" -eq 0 ]
  [[ "$output" == *"batch.npy#0 (image)"* ]]
  [[ "$output" == *"batch.npy#1 (image)"* ]]
  "$BIN/vt-convert" "$FIX/cli/batch.npy" | "$BIN/vt-convert" --to npy -o "$T/back.npy" -
  # Same data bytes: the last 2*3*32*32*4 bytes of both files.
  cmp <(tail -c 24576 "$FIX/cli/batch.npy") <(tail -c 24576 "$T/back.npy")
}

@test "a pipe between two vt-convert processes keeps every frame" {
  "$BIN/vt-convert" "$SAMPLES/tench.jpg" "$FIX/cli/batch.npy" "$SAMPLES/polars.jpeg" |
    "$BIN/vt-convert" - | "$BIN/vt-convert" --info > "$T/info"
  [ "$(grep -c '^frame ' "$T/info")" -eq 4 ]
  grep -n '^frame ' "$T/info" | sed -n 4p | grep -q polars.jpeg
}

@test "frames load as safetensors data with numpy alone" {
  have_numpy || skip "no /usr/bin/python3 with numpy"
  "$BIN/vt-convert" "$FIX/cli/batch.npy" -o "$T/frames"
  "$PY" - "$T/frames" "$FIX/cli/batch.npy" <<'PY'
import json, struct, sys
import numpy as np
b = open(sys.argv[1], "rb").read()
want = np.load(sys.argv[2])
pos, i = 0, 0
while pos < len(b):
    n = struct.unpack("<Q", b[pos:pos + 8])[0]
    assert n % 8 == 0, n
    h = json.loads(b[pos + 8:pos + 8 + n])
    meta = h.pop("__metadata__")
    assert meta["vt"] == "1" and meta["kind"] == "image", meta
    assert meta["name"] == "batch.npy#%d" % i, meta
    e = h["image"]
    s, t = e["data_offsets"]
    base = pos + 8 + n
    a = np.frombuffer(b[base + s:base + t], "<f4").reshape(e["shape"])
    assert np.array_equal(a, want[i]), i
    pos = base + max(v["data_offsets"][1] for v in h.values())
    i += 1
assert i == 2, i
PY
}

@test "-o writes atomically: a failed run leaves no file, an old file untouched" {
  run "$BIN/vt-convert" "$T/missing.jpg" -o "$T/out"
  [ "$status" -eq 1 ]
  [ ! -e "$T/out" ]
  echo old > "$T/keep"
  run "$BIN/vt-convert" "$FIX/cli/bad-crc.png" -o "$T/keep"
  [ "$status" -eq 1 ]
  [ "$(cat "$T/keep")" = old ]
  [ -z "$(ls "$T" | grep tmp)" ]
}

@test "a truncated JPEG is one clear error line and exit 1" {
  head -c 5000 "$SAMPLES/tench.jpg" > "$T/cut.jpg"
  run_err "$BIN/vt-convert" "$T/cut.jpg" -o "$T/out"
  [ "$status" -eq 1 ]
  one_error_line "cut.jpg" "truncated|premature|corrupt"
  [ ! -e "$T/out" ]
}

@test "a PNG with a bad CRC is one clear error line and exit 1" {
  run_err "$BIN/vt-convert" "$FIX/cli/bad-crc.png"
  [ "$status" -eq 1 ]
  one_error_line "bad-crc.png" "CRC|crc|corrupt"
}

@test "an empty file is one clear error line and exit 1" {
  : > "$T/empty.jpg"
  run_err "$BIN/vt-convert" "$T/empty.jpg"
  [ "$status" -eq 1 ]
  one_error_line "empty.jpg" "empty file"
}

@test "a frame whose header length is past the end of the file is 'truncated frame'" {
  printf '\377\377\000\000\000\000\000\000{}' > "$T/bad.frame"
  run_err "$BIN/vt-convert" --info "$T/bad.frame"
  [ "$status" -eq 1 ]
  one_error_line "bad.frame" "truncated frame"
}

@test "a directory as input is one clear error line and exit 1" {
  run_err "$BIN/vt-convert" "$T"
  [ "$status" -eq 1 ]
  one_error_line "$T" "is a directory"
}

@test "a batch with bad inputs still converts the good ones, in order, and exits 1" {
  : > "$T/empty.png"
  run --separate-stderr "$BIN/vt-convert" "$SAMPLES/tench.jpg" "$T/empty.png" "$SAMPLES/polars.jpeg" \
      "$T/nope.jpg" -o "$T/out"
  [ "$status" -eq 1 ]
  [ "$(printf '%s\n' "$stderr" | grep -c '^vt-convert: ')" -eq 2 ]
  "$BIN/vt-convert" --info "$T/out" | grep '^frame ' > "$T/list"
  [ "$(wc -l < "$T/list")" -eq 2 ]
  head -1 "$T/list" | grep -q tench.jpg
  tail -1 "$T/list" | grep -q polars.jpeg
}

@test "a stream cut inside a frame: complete frames out, then 'truncated frame', exit 1" {
  "$BIN/vt-convert" "$FIX/cli/batch.npy" > "$T/two"
  size=$(stat -c %s "$T/two")
  head -c $((size - 100)) "$T/two" > "$T/cut"
  run --separate-stderr "$BIN/vt-convert" --info - < "$T/cut"
  [ "$status" -eq 1 ]
  [ "$(printf '%s\n' "$output" | grep -c '^frame ')" -eq 1 ]
  [[ "$stderr" == *"vt-convert: stdin: truncated frame"* ]]
}

@test "image frames draw back to the crop as PNG; maps use the colormap" {
  "$BIN/vt-convert" "$FIX/cli/tiny.png" --size 24 --crop-pct 1 | "$BIN/vt-convert" --to png -o "$T/crop.png" -
  [ "$(head -c 8 "$T/crop.png" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ]
  if have_pil; then
    "$PY" - "$T/crop.png" "$FIX/cli/tiny.png" <<'PY'
import sys
import numpy as np
from PIL import Image
got = np.asarray(Image.open(sys.argv[1]))
src = Image.open(sys.argv[2]).convert("RGB")
w, h = src.size                    # 40x30: shorter side 30 -> 24
nw = int(24 * w / h)
ref = np.asarray(src.resize((nw, 24), Image.BICUBIC))
left = int(round((nw - 24) / 2.0))
ref = ref[:, left:left + 24]
assert got.shape == (24, 24, 3), got.shape
assert np.abs(got.astype(int) - ref).max() <= 1, np.abs(got.astype(int) - ref).max()
PY
  fi
}

@test "--to png with several frames needs --out-dir, which writes one PNG each" {
  run "$BIN/vt-convert" --to png -o "$T/x.png" "$FIX/cli/batch.npy"
  [ "$status" -eq 1 ]
  [ ! -e "$T/x.png" ]
  mkdir "$T/pngs"
  "$BIN/vt-convert" --to png --out-dir "$T/pngs" "$FIX/cli/batch.npy" "$SAMPLES/tench.jpg"
  [ -f "$T/pngs/batch-0.png" ] && [ -f "$T/pngs/batch-1.png" ] && [ -f "$T/pngs/tench.png" ]
}

@test "works under xargs -P: parallel runs, distinct outputs, no temporary files left" {
  for i in 1 2 3 4 5 6 7 8; do cp "$SAMPLES/polars.jpeg" "$T/p$i.jpeg"; done
  ls "$T"/p*.jpeg | xargs -P 4 -I{} "$BIN/vt-convert" {} -o {}.frame
  [ "$(ls "$T"/*.frame | wc -l)" -eq 8 ]
  [ -z "$(ls "$T" | grep tmp)" ]
  for i in 2 3 4 5 6 7 8; do cmp <(tail -c 602112 "$T/p1.jpeg.frame") <(tail -c 602112 "$T/p$i.jpeg.frame"); done
}

@test "a checkpoint given as an image input says how to convert it" {
  printf 'PK\003\004rest' > "$T/model.pth"
  run_err "$BIN/vt-convert" "$T/model.pth"
  [ "$status" -eq 1 ]
  one_error_line "model.pth" "checkpoint"
}

@test "the man pages render" {
  command -v man >/dev/null || skip "man is not installed"
  for m in "$ROOT"/man/*.[15]; do
    out=$(MANWIDTH=80 man -l "$m" 2>&1 >/dev/null)
    [ -z "$out" ]
  done
}
