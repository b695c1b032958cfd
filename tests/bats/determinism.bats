#!/usr/bin/env bats
# Determinism, as vt-classify(1) and vt-sigmap(1) state it: the same run
# gives the same bytes every time; other -t and -b values give logits (and
# maps) within 1e-5 of the largest value, for the small model of every
# family.
load helper
bats_require_minimum_version 1.5.0

setup_file() {
  local d=$BATS_FILE_TMPDIR
  for f in sgformer:sgformer_s groupmix:groupmix pale:pale; do
    "$BIN/vt-convert" --arch "${f#*:}" --config "$FIX/${f%%:*}/meta.json" \
      "$FIX/${f%%:*}/checkpoint.pth" -o "$d/${f%%:*}.safetensors"
  done
  # swin and stvit have no small fixture: seeded random weights, small dims
  echo '{"embed_dim":8,"depths":[2,2,2,1],"num_heads":[2,2,4,4],"img_size":128,"window_size":4,"num_classes":10,"mlp_ratio":2}' > "$d/swin.json"
  "$BIN/vt-convert" --arch swin_tiny_patch4_window7_224 --random --config "$d/swin.json" \
    -o "$d/swin.safetensors"
  echo '{"embed_dim":6,"depths":[1,2,6,1],"num_heads":[2,2,2,4],"num_classes":10,"mlp_ratio":2}' > "$d/stvit.json"
  "$BIN/vt-convert" --arch stvit_r_swin_t --random --config "$d/stvit.json" \
    -o "$d/stvit.safetensors"
}

models() {
  echo "$FIX/vit/tiny.safetensors $FIX/vit/dist.safetensors"
  for f in sgformer groupmix pale swin stvit; do echo "$BATS_FILE_TMPDIR/$f.safetensors"; done
}

INPUTS=("$SAMPLES/tench.jpg" "$SAMPLES/polars.jpeg" "$SAMPLES/magpie.jpeg"
        "$SAMPLES/cheetah.jpg" "$FIX/hostile/tall.png")

# Largest difference between the frames of two streams, relative to the
# largest magnitude in the first; names and shapes must match.
max_rel_diff() {   # $1 $2 = frame files
  "$PY" - "$1" "$2" <<'PY'
import json, struct, sys
def frames(path):
    b, pos, out = open(path, "rb").read(), 0, []
    while pos < len(b):
        n = struct.unpack("<Q", b[pos:pos + 8])[0]
        h = json.loads(b[pos + 8:pos + 8 + n])
        base, end = pos + 8 + n, pos + 8 + n
        name = h.pop("__metadata__", {}).get("name")
        for k, v in sorted(h.items()):
            s, e = v["data_offsets"]
            out.append((name, k, v["shape"], struct.unpack("<%df" % ((e - s) // 4), b[base + s:base + e])))
            end = max(end, base + e)
        pos = end
    return out
a, b = frames(sys.argv[1]), frames(sys.argv[2])
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
worst = 0.0
for (n1, k1, s1, x), (n2, k2, s2, y) in zip(a, b):
    assert (n1, k1, s1) == (n2, k2, s2), (n1, n2)
    scale = max(abs(v) for v in x) or 1.0
    worst = max(worst, max(abs(u - v) for u, v in zip(x, y)) / scale)
print("%.3g" % worst)
PY
}

@test "determinism: the same run twice gives the same bytes, logits and maps, every family" {
  for m in $(models); do
    for run in 1 2; do
      "$BIN/vt-classify" -m "$m" --logits -t 2 -b 3 "${INPUTS[@]}" 2>/dev/null > "$T/l$run"
    done
    [ -s "$T/l1" ]
    cmp "$T/l1" "$T/l2"
  done
  for m in "$FIX/vit/tiny.safetensors" "$BATS_FILE_TMPDIR/sgformer.safetensors"; do
    for run in 1 2; do
      "$BIN/vt-sigmap" -m "$m" -t 2 "${INPUTS[@]}" > "$T/s$run"
    done
    [ -s "$T/s1" ]
    cmp "$T/s1" "$T/s2"
  done
}

# -b 5: one forward pass of 5 images, which Swin and SG-Former run as
# passes of at most 4
@test "determinism: logits at -t 1/2 and -b 1/3/5 agree within 1e-5 of the largest logit, every family" {
  [ -x "$PY" ] || skip "needs python3 to compare frames"
  for m in $(models); do
    for t in 1 2; do
      for b in 1 3 5; do
        "$BIN/vt-classify" -m "$m" --logits -t $t -b $b "${INPUTS[@]}" 2>/dev/null > "$T/t$t.b$b"
      done
    done
    for other in t1.b3 t1.b5 t2.b1 t2.b3 t2.b5; do
      d=$(max_rel_diff "$T/t1.b1" "$T/$other")
      echo "# $(basename "$m") $other: $d"
      "$PY" -c "import sys; sys.exit(not float(sys.argv[1]) <= 1e-5)" "$d"
    done
  done
}

@test "determinism: significance maps at -t 1 and -t 2 agree within 1e-5 of the largest value" {
  [ -x "$PY" ] || skip "needs python3 to compare frames"
  for m in "$FIX/vit/tiny.safetensors" "$FIX/vit/dist.safetensors" "$BATS_FILE_TMPDIR/sgformer.safetensors"; do
    "$BIN/vt-sigmap" -m "$m" -t 1 "${INPUTS[@]}" > "$T/s1"
    "$BIN/vt-sigmap" -m "$m" -t 2 "${INPUTS[@]}" > "$T/s2"
    d=$(max_rel_diff "$T/s1" "$T/s2")
    echo "# $(basename "$m"): $d"
    "$PY" -c "import sys; sys.exit(not float(sys.argv[1]) <= 1e-5)" "$d"
  done
}
