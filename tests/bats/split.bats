#!/usr/bin/env bats
# Split inference: vt-classify --until L writes tokens frames, and
# vt-classify continues them. Unpruned, the split is bit-identical to the
# uninterrupted run (logits frames compared with cmp).
load helper
bats_require_minimum_version 1.5.0

VIT=$FIX/vit

setup_file() {
  # DeiT-Ti at full size (14x14 grid, 12 blocks), random weights
  "$BIN/vt-convert" --arch deit_tiny_patch16_224 --random -o "$BATS_FILE_TMPDIR/ti.safetensors"
}

TI() { echo "$BATS_FILE_TMPDIR/ti.safetensors"; }

@test "split: --until L then continue is bit-identical for every L (fixtures, batch 1 and 2)" {
  for m in tiny dist; do
    for b in 1 2; do
      "$BIN/vt-classify" -m "$VIT/$m.safetensors" -b $b --logits "$VIT/$m-input.npy" \
        > "$T/full" 2>/dev/null
      for L in 0 1; do
        "$BIN/vt-classify" -m "$VIT/$m.safetensors" -b $b --until $L "$VIT/$m-input.npy" |
          "$BIN/vt-classify" -m "$VIT/$m.safetensors" -b $b --logits > "$T/split" 2>/dev/null
        cmp "$T/full" "$T/split"
      done
    done
  done
}

@test "split: DeiT-Ti on photos, every block 0-11: logits bit-identical" {
  "$BIN/vt-classify" -m "$(TI)" --logits "$SAMPLES"/* > "$T/full" 2>/dev/null
  [ "$(stat -c %s "$T/full")" -gt 0 ]
  for L in 0 1 2 3 4 5 6 7 8 9 10 11; do
    "$BIN/vt-classify" -m "$(TI)" --until $L "$SAMPLES"/* |
      "$BIN/vt-classify" -m "$(TI)" --logits > "$T/split" 2>/dev/null
    cmp "$T/full" "$T/split"
  done
  # in three steps: until 2, on to 8, then the rest
  "$BIN/vt-classify" -m "$(TI)" --until 2 "$SAMPLES"/* |
    "$BIN/vt-classify" -m "$(TI)" --until 8 | "$BIN/vt-classify" -m "$(TI)" --logits \
    > "$T/three" 2>/dev/null
  cmp "$T/full" "$T/three"
  # and the text output of a continuation is the classification's
  "$BIN/vt-classify" -m "$(TI)" --format tsv "$SAMPLES"/* > "$T/a.tsv" 2>/dev/null
  "$BIN/vt-classify" -m "$(TI)" --until 5 "$SAMPLES"/* |
    "$BIN/vt-classify" -m "$(TI)" --format tsv > "$T/b.tsv" 2>/dev/null
  cmp "$T/a.tsv" "$T/b.tsv"
}

@test "split: the tokens frame: tensors, boxes, identity, block, grid and crop geometry" {
  have_numpy || skip "needs /usr/bin/python3 with numpy"
  "$BIN/vt-classify" -m "$(TI)" --until 3 "$SAMPLES/tench.jpg" > "$T/tok"
  run "$BIN/vt-convert" --info "$T/tok"
  [ "$status" -eq 0 ]
  [[ "$output" == *"tench.jpg (tokens)"* ]]
  [[ "$output" == *"tokens "*"F32"*"[196,192]"* ]]
  [[ "$output" == *"boxes "*"I32"*"[196,4]"* ]]
  [[ "$output" == *"extra "*"F32"*"[1,192]"* ]]
  [[ "$output" == *"cls_attn "*"F32"*"[196]"* ]]
  for kv in "kind = tokens" "arch = deit_tiny_patch16_224" "family = vit" "block = 3" \
            "grid = 14,14" "tokens = 196" "extra_tokens = 1" "random = 1" "size = 224"; do
    grep -qx "  $kv" <<< "$output"
  done
  info_img=$("$BIN/vt-convert" -m "$(TI)" --info "$SAMPLES/tench.jpg")
  for k in orig_width orig_height resized crop; do
    [ "$(grep "^  $k = " <<< "$output")" = "$(grep "^  $k = " <<< "$info_img")" ]
  done
  "$PY" - "$T/tok" "$(TI)" <<'PY'
import hashlib, json, struct, sys
import numpy as np
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); meta = h.pop("__metadata__")
def arr(k, dt):
    s, e = h[k]["data_offsets"]
    return np.frombuffer(b[8 + n + s:8 + n + e], dt).reshape(h[k]["shape"])
boxes = arr("boxes", "<i4")
want = [[i % 14, i // 14, i % 14 + 1, i // 14 + 1] for i in range(196)]
assert (boxes == np.array(want)).all(), boxes[:3]
cls = arr("cls_attn", "<f4")
assert (cls > 0).all() and cls.sum() < 1, cls.sum()     # a share of a softmax row
m = open(sys.argv[2], "rb").read()
mn = struct.unpack("<Q", m[:8])[0]
assert meta["weights_sha256"] == hashlib.sha256(m[8 + mn:]).hexdigest()
PY
}

@test "split: a tokens frame from another model is refused; the others are still classified" {
  "$BIN/vt-classify" -m "$VIT/tiny.safetensors" --until 0 "$VIT/tiny-input.npy" > "$T/a"
  # the same arch with other weights: only the hash tells them apart
  printf '{"img_size":32,"patch_size":8,"embed_dim":32,"depth":2,"num_heads":2,"num_classes":10}' \
    > "$T/cfg.json"
  "$BIN/vt-convert" --arch deit_tiny_patch16_224 --random --seed 7 --config "$T/cfg.json" \
    -o "$T/other.safetensors"
  "$BIN/vt-classify" -m "$T/other.safetensors" --until 0 "$VIT/tiny-input.npy" > "$T/b"
  status=0
  cat "$T/b" "$T/a" | "$BIN/vt-classify" -m "$VIT/tiny.safetensors" -k 1 --format tsv \
    > "$T/out" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  [ "$(grep -c 'tokens frame is from another model' "$T/err")" -eq 3 ]
  grep -q "^vt-classify: tiny-input.npy#0: tokens frame is from another model (deit_tiny_patch16_224, weights " "$T/err"
  [ "$(wc -l < "$T/out")" -eq 3 ]
  # another arch altogether
  run_err "$BIN/vt-classify" -m "$VIT/dist.safetensors" "$T/a"
  [ "$status" -eq 1 ]
  [[ "$err" == *"another model (deit_tiny_patch16_224"*"this is deit_tiny_distilled_patch16_224"* ]]
}

@test "split: Swin after any block, across stage ends: logits bit-identical; pruned sets refused" {
  printf '{"embed_dim":16,"depths":[2,2,2,2],"num_heads":[1,2,4,8],"num_classes":10}' > "$T/cfg.json"
  "$BIN/vt-convert" --arch swin_tiny_patch4_window7_224 --random --config "$T/cfg.json" -o "$T/sw.safetensors"
  "$BIN/vt-classify" -m "$T/sw.safetensors" --logits "$SAMPLES/tench.jpg" "$SAMPLES/magpie.jpeg" \
    > "$T/full" 2>/dev/null
  for L in 0 1 2 3 4 5 6 7; do
    "$BIN/vt-classify" -m "$T/sw.safetensors" --until $L "$SAMPLES/tench.jpg" "$SAMPLES/magpie.jpeg" |
      "$BIN/vt-classify" -m "$T/sw.safetensors" --logits > "$T/split" 2>/dev/null
    cmp "$T/full" "$T/split"
  done
  # stage ends: the stage's own grid and width, before the patch merging
  "$BIN/vt-classify" -m "$T/sw.safetensors" --until 1 "$SAMPLES/tench.jpg" > "$T/s1"
  "$BIN/vt-classify" -m "$T/sw.safetensors" --until 5 "$SAMPLES/tench.jpg" > "$T/s3"
  run "$BIN/vt-convert" --info "$T/s1"
  [[ "$output" == *"tokens "*"F32"*"[3136,16]"* ]]
  grep -qx "  grid = 56,56" <<< "$output"
  grep -qx "  extra_tokens = 0" <<< "$output"
  run "$BIN/vt-convert" --info "$T/s3"
  [[ "$output" == *"[196,64]"* ]]
  grep -qx "  grid = 14,14" <<< "$output"
  # a pruned set cannot go on through windows
  "$BIN/vt-prune" --keep 0.5 "$T/s3" > "$T/p"
  grep -q "topk:98/196:norm" <(sed -n 's/^  pruned = //p' <("$BIN/vt-convert" --info "$T/p"))
  run_err "$BIN/vt-classify" -m "$T/sw.safetensors" "$T/p"
  [ "$status" -eq 1 ]
  [[ "$err" == *"vt-classify: tench.jpg: swin continues the full 14x14 grid of stage 3, not 98 tokens"* ]]
}

@test "split: families without split inference are refused, naming the ones with it" {
  SGF=$FIX/sgformer
  "$BIN/vt-convert" --arch sgformer_s --config "$SGF/meta.json" "$SGF/checkpoint.pth" -o "$T/sg.safetensors"
  run_err "$BIN/vt-classify" -m "$T/sg.safetensors" --until 1 "$SAMPLES/tench.jpg"
  [ "$status" -eq 2 ]
  one_error_line "vt-classify: $T/sg.safetensors" "not available for the sgformer family \(it is for: vit, swin\)"
}

@test "split: usage errors exit 2; a frame past --until is refused" {
  run_err "$BIN/vt-classify" -m "$VIT/tiny.safetensors" --until 2 "$VIT/tiny-input.npy"
  [ "$status" -eq 2 ]
  one_error_line "tiny.safetensors" "blocks 0 to 1, not 2"
  run_err "$BIN/vt-classify" -m "$VIT/tiny.safetensors" --until x "$VIT/tiny-input.npy"
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-classify" -m "$VIT/tiny.safetensors" --until 0 --logits "$VIT/tiny-input.npy"
  [ "$status" -eq 2 ]
  "$BIN/vt-classify" -m "$VIT/tiny.safetensors" --until 1 "$VIT/tiny-input.npy" > "$T/t1"
  status=0
  "$BIN/vt-classify" -m "$VIT/tiny.safetensors" --until 0 "$T/t1" > "$T/out" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  grep -q "tiny-input.npy#0: tokens are after block 1; --until 0 is not later" "$T/err"
  [ ! -s "$T/out" ]
}

@test "split: image and tokens frames mixed on one stream keep their order" {
  "$BIN/vt-convert" "$VIT/tiny-input.npy" > "$T/img"
  "$BIN/vt-classify" -m "$VIT/tiny.safetensors" --until 1 "$T/img" > "$T/tok"
  cat "$T/tok" "$T/img" "$T/tok" > "$T/mixed"
  "$BIN/vt-classify" -m "$VIT/tiny.safetensors" -b 4 -k 1 --format tsv "$T/mixed" > "$T/out" 2>/dev/null
  [ "$(cut -f1 "$T/out" | tr '\n' ' ')" = "tiny-input.npy#0 tiny-input.npy#1 tiny-input.npy#2 tiny-input.npy#0 tiny-input.npy#1 tiny-input.npy#2 tiny-input.npy#0 tiny-input.npy#1 tiny-input.npy#2 " ]
  # (a batch's size can change the last bits: compare names, ranks, classes)
  "$BIN/vt-classify" -m "$VIT/tiny.safetensors" -k 1 --format tsv "$T/img" | cut -f1-3 > "$T/one"
  [ "$(cat "$T/one" "$T/one" "$T/one")" = "$(cut -f1-3 "$T/out")" ]
}
